/* Ping-pong between ranks 0 and 1, OSU-style: for each message size, warm-up
 * round trips, then timed ones. Prints the MPI library version (to tell which
 * libmpi the process really loaded), rank/size, then per size the one-way
 * latency in microseconds and the bandwidth in MB/s (10^6 bytes per second).
 *
 * Usage: pingpong [ITERATIONS]   (default 1000; large messages use 1/10). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int sizes[] = {8, 1024, 65536, 1048576};

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size, len;
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_library_version(version, &len);
    if (rank == 0) {
        /* Only the first line: the full string spans many lines. */
        char *nl = strchr(version, '\n');
        if (nl) *nl = '\0';
        printf("library: %s\n", version);
    }
    printf("rank %d of %d\n", rank, size);
    fflush(stdout);
    if (size < 2) {
        if (rank == 0) fprintf(stderr, "pingpong: error: needs at least 2 ranks\n");
        MPI_Finalize();
        return 1;
    }
    int iters = argc > 1 ? atoi(argv[1]) : 1000;
    if (iters < 1) iters = 1;
    char *buf = malloc(sizes[sizeof sizes / sizeof *sizes - 1]);
    memset(buf, 'b', sizes[sizeof sizes / sizeof *sizes - 1]);
    for (unsigned s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        int it = n >= 65536 ? (iters + 9) / 10 : iters;
        int warmup = it / 10 + 1;
        double start = 0;
        MPI_Barrier(MPI_COMM_WORLD);
        for (int i = 0; i < warmup + it; i++) {
            if (i == warmup) start = MPI_Wtime();
            if (rank == 0) {
                MPI_Send(buf, n, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
                MPI_Recv(buf, n, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            } else if (rank == 1) {
                MPI_Recv(buf, n, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                MPI_Send(buf, n, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
            }
        }
        double elapsed = MPI_Wtime() - start;
        if (rank == 0) {
            double one_way_us = elapsed * 1e6 / (2.0 * it);
            printf("size %d latency_us %.3f bandwidth_mbs %.1f\n", n, one_way_us,
                   n / one_way_us);
        }
    }
    if (rank == 0) printf("pingpong: done\n");
    free(buf);
    MPI_Finalize();
    return 0;
}
