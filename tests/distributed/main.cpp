// Catch2 main of contrastive_distributed_tests: MPI lives for the whole run. Every rank runs every test
// case; ctest starts the executable under mpiexec with 1, 2 and 3 ranks (distributed/np1..np3).
#define CATCH_CONFIG_RUNNER
#include "support/test_config.hpp"

#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Catch::Session session;
  int rc = session.applyCommandLine(argc, argv);
  if (rc == 0) rc = session.run();
  // The run fails when any rank failed.
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst != 0 ? 1 : 0;
}
