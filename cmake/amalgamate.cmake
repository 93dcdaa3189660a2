# Builds the single header from the umbrella include/contrastive/contrastive.hpp.
#
#   cmake -DSRC=<include dir> -DOUT=<file> [-DCHECK=ON] [-DFRESH=<file>] [-DBUILD_DIR=<dir>]
#         -P cmake/amalgamate.cmake
#
# Every quoted `#include "contrastive/..."` is replaced by that header's text the first time it is
# met (depth first, so in first-use order) and dropped afterwards; `<...>` includes stay as they
# are. The output is deterministic (no dates, no absolute paths).
# CHECK=ON writes nothing to OUT: it compares OUT with a fresh amalgamation (also written to FRESH
# when given) and fails, printing the command to regenerate, when they differ.
cmake_minimum_required(VERSION 3.16)

foreach(var SRC OUT)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "amalgamate.cmake: -D${var}=... is required\n"
      "usage: cmake -DSRC=<include dir> -DOUT=<file> [-DCHECK=ON] -P cmake/amalgamate.cmake")
  endif()
endforeach()
get_filename_component(SRC "${SRC}" ABSOLUTE)
get_filename_component(OUT "${OUT}" ABSOLUTE)
if(FRESH)
  get_filename_component(FRESH "${FRESH}" ABSOLUTE)
endif()
set(_root "contrastive/contrastive.hpp")
if(NOT EXISTS "${SRC}/${_root}")
  message(FATAL_ERROR "amalgamate.cmake: ${SRC}/${_root} not found")
endif()

# A quoted, root-relative include directive at the start of a line (the content is prefixed with
# a newline so that the first line matches too).
set(_include_re "\n[ \t]*#[ \t]*include[ \t]*\"(contrastive/[^\"]+)\"[^\n]*")

set_property(GLOBAL PROPERTY _amalg_seen "")
set_property(GLOBAL PROPERTY _amalg_out "")

# Appends the amalgamated text of <rel> (a path relative to SRC) to the global _amalg_out.
function(_amalg_file rel from)
  set(path "${SRC}/${rel}")
  if(NOT EXISTS "${path}")
    message(FATAL_ERROR "amalgamate.cmake: ${from} includes \"${rel}\", which is not in ${SRC}")
  endif()
  file(READ "${path}" text)
  string(REGEX REPLACE "\n$" "" text "${text}")   # the end marker supplies the final newline
  set(rest "\n${text}")
  while(TRUE)
    string(REGEX MATCH "${_include_re}" directive "${rest}")
    if(directive STREQUAL "")
      break()
    endif()
    set(dep "${CMAKE_MATCH_1}")
    string(FIND "${rest}" "${directive}" pos)
    string(SUBSTRING "${rest}" 0 ${pos} before)
    string(LENGTH "${directive}" len)
    math(EXPR after_pos "${pos} + ${len}")
    string(SUBSTRING "${rest}" ${after_pos} -1 rest)
    set_property(GLOBAL APPEND_STRING PROPERTY _amalg_out "${before}")
    get_property(seen GLOBAL PROPERTY _amalg_seen)
    list(FIND seen "${dep}" idx)
    if(idx EQUAL -1)   # first use: inline it; later uses: drop the directive line
      set_property(GLOBAL APPEND PROPERTY _amalg_seen "${dep}")
      set_property(GLOBAL APPEND_STRING PROPERTY _amalg_out "\n// ---- begin ${dep} ----")
      _amalg_file("${dep}" "${rel}")
      set_property(GLOBAL APPEND_STRING PROPERTY _amalg_out "\n// ---- end ${dep} ----")
    endif()
  endwhile()
  set_property(GLOBAL APPEND_STRING PROPERTY _amalg_out "${rest}")
endfunction()

set_property(GLOBAL PROPERTY _amalg_seen "${_root}")
_amalg_file("${_root}" "-")
get_property(_body GLOBAL PROPERTY _amalg_out)
string(REGEX REPLACE "^\n" "" _body "${_body}")

# Version for the banner, read from version.hpp when it is there.
set(_version "")
if(EXISTS "${SRC}/contrastive/version.hpp")
  file(STRINGS "${SRC}/contrastive/version.hpp" _v REGEX "#define CONTRASTIVE_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX MATCH "CONTRASTIVE_VERSION_${part} +([0-9]+)" _m "${_v}")
    list(APPEND _version "${CMAKE_MATCH_1}")
  endforeach()
  string(REPLACE ";" "." _version " v${_version}")
endif()

set(_regen_p "cmake -DSRC=include -DOUT=single_include/contrastive/contrastive.hpp -P cmake/amalgamate.cmake")
set(_banner
"// contrastive${_version}: single-header edition (SPDX-License-Identifier: MIT).
//
// GENERATED FILE: DO NOT EDIT. It is include/contrastive/contrastive.hpp with every header it
// uses inlined by cmake/amalgamate.cmake; edit the headers under include/ and regenerate with
//   cmake --build <build-dir> --target contrastive_amalgamate
// or, from the repository root,
//   ${_regen_p}
// The xtensor adapter, cuda/ and distributed/ are not part of it.
")
set(_result "${_banner}\n${_body}\n")

if(CHECK)
  if(FRESH)
    file(WRITE "${FRESH}" "${_result}")
  endif()
  set(_current "")
  if(EXISTS "${OUT}")
    file(READ "${OUT}" _current)
  endif()
  if(NOT _current STREQUAL _result)
    if(BUILD_DIR)
      set(_hint "  cmake --build ${BUILD_DIR} --target contrastive_amalgamate\nor\n")
    else()
      set(_hint "  cmake --build <build-dir> --target contrastive_amalgamate\nor\n")
    endif()
    if(FRESH)
      set(_diff "\nTo see the difference: diff -u ${OUT} ${FRESH}")
    else()
      set(_diff "")
    endif()
    message(FATAL_ERROR
      "${OUT} is stale: it differs from a fresh amalgamation of ${SRC}. Regenerate it with\n"
      "${_hint}  ${CMAKE_COMMAND} -DSRC=${SRC} -DOUT=${OUT} -P ${CMAKE_CURRENT_LIST_FILE}\n"
      "and commit the result (never edit it by hand).${_diff}")
  endif()
  message(STATUS "${OUT} is up to date")
else()
  set(_current "")
  if(EXISTS "${OUT}")
    file(READ "${OUT}" _current)
  endif()
  if(_current STREQUAL _result)   # leave the timestamp alone when nothing changed
    message(STATUS "${OUT} is up to date")
  else()
    file(WRITE "${OUT}" "${_result}")
    message(STATUS "Wrote ${OUT}")
  endif()
endif()
