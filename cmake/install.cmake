# Installs the headers, the exported target contrastive::contrastive and the package files, so that
# consumers can call find_package(contrastive 0.1 CONFIG REQUIRED). Included from the top-level
# CMakeLists.txt when CONTRASTIVE_INSTALL is ON.
include(CMakePackageConfigHelpers)

# Headers: the whole include/contrastive tree, or the generated single header.
if(CONTRASTIVE_SINGLE_INCLUDE)
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/single_include/contrastive"
          DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/contrastive"
          DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
endif()

# The INTERFACE targets; the include directory is ${CMAKE_INSTALL_INCLUDEDIR}. contrastive::cuda
# and contrastive::mpi are the optional components (the package config finds their dependencies
# when they are requested).
install(TARGETS contrastive contrastive_cuda contrastive_mpi EXPORT contrastiveTargets)
install(EXPORT contrastiveTargets
        NAMESPACE contrastive::
        DESTINATION "${CONTRASTIVE_CMAKE_DIR}")

# contrastiveConfig.cmake finds Eigen3 for the consumer; in 0.x a minor release may break, hence
# SameMinorVersion. Header-only, so any architecture will do.
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/contrastiveConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/contrastiveConfig.cmake"
  INSTALL_DESTINATION "${CONTRASTIVE_CMAKE_DIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/contrastiveConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion
  ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/contrastiveConfig.cmake"
              "${PROJECT_BINARY_DIR}/contrastiveConfigVersion.cmake"
        DESTINATION "${CONTRASTIVE_CMAKE_DIR}")
