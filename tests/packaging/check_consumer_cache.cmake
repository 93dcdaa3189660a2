# Fails when a consumer that only add_subdirectory()s contrastive has CUDA, MPI or xtensor entries
# in its cache: the library must not probe what it does not need, nor choose a compiler for it.
# Usage: cmake -DCACHE=<consumer>/CMakeCache.txt -P check_consumer_cache.cmake
if(NOT EXISTS "${CACHE}")
  message(FATAL_ERROR "no consumer cache at ${CACHE} (did package/subdir run?)")
endif()
file(STRINGS "${CACHE}" _entries REGEX "^[^#/].*:")
set(_bad "")
foreach(_e IN LISTS _entries)
  if(_e MATCHES "^(CMAKE_CUDA|CUDA|CUDAToolkit|MPI|xtensor)[A-Za-z_]*:")
    list(APPEND _bad "${_e}")
  endif()
endforeach()
if(_bad)
  string(REPLACE ";" "\n  " _list "${_bad}")
  message(FATAL_ERROR "the consumer's cache has entries contrastive should not have written:\n  ${_list}")
endif()
list(LENGTH _entries _n)
message(STATUS "consumer cache clean (${_n} entries, none for CUDA, MPI or xtensor)")
