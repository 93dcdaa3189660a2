# headers/warnings (run by ctest): compiles every public header alone, and warnings.cpp (which
# instantiates every loss for float and double), with one compiler and
# -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror. Third-party headers are -isystem.
# Variables: COMPILER, SOURCE_DIR, HEADERS (;-list relative to include/), SYSTEM_DIRS (;-list).
set(flags -std=c++17 -fsyntax-only -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror)
set(includes -I${SOURCE_DIR}/include)
foreach(d IN LISTS SYSTEM_DIRS)
  list(APPEND includes -isystem ${d})
endforeach()
set(failed 0)
set(count 0)
foreach(h IN LISTS HEADERS warnings.cpp)
  if(h STREQUAL "")
    continue()
  endif()
  if(h STREQUAL "warnings.cpp")
    set(args ${SOURCE_DIR}/tests/headers/warnings.cpp)
  else()
    set(args -x c++ -)  # the header alone, as the first line of a TU read from stdin
    file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/header_tu_input "#include <${h}>\n")
  endif()
  if(h STREQUAL "warnings.cpp")
    execute_process(COMMAND ${COMPILER} ${flags} ${includes} ${args}
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  else()
    execute_process(COMMAND ${COMPILER} ${flags} ${includes} ${args}
                    INPUT_FILE ${CMAKE_CURRENT_BINARY_DIR}/header_tu_input
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  endif()
  math(EXPR count "${count} + 1")
  if(NOT rc EQUAL 0)
    math(EXPR failed "${failed} + 1")
    message("---- ${h}:\n${out}")
  endif()
endforeach()
if(failed GREATER 0)
  message(FATAL_ERROR "${failed} of ${count} translation units have warnings under ${COMPILER}")
endif()
message("headers/warnings: ${count} translation units clean under ${COMPILER}")
