# Overlay port: builds from the checkout that holds it, so it works offline:
#   vcpkg install contrastive --overlay-ports=<checkout>/ports
# A registry port would fetch a release instead, e.g.
#   vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO <owner>/contrastive REF "v${VERSION}"
#                     SHA512 <hash> HEAD_REF main)
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# Header-only: one (release) configuration is enough.
set(VCPKG_BUILD_TYPE release)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    xtensor CONTRASTIVE_WITH_XTENSOR)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DCONTRASTIVE_BUILD_TESTS=OFF
    -DCONTRASTIVE_BUILD_BENCHMARKS=OFF
    -DCONTRASTIVE_BUILD_EXAMPLES=OFF
    -DCONTRASTIVE_INSTALL=ON
    ${FEATURE_OPTIONS})
vcpkg_cmake_install()

# share/cmake/contrastive -> share/contrastive
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/contrastive)

# Nothing is compiled: drop the empty debug tree and lib/.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")

vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
