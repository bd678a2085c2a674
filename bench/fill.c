/* fill: the physical floor of any loader that copies code onto huge pages.
 *
 * Reads N MiB of a file (page cache warm) into a fresh 2 MiB-aligned region
 * and prints the time of each repetition in milliseconds, one per line.
 *   fill thp      FILE MIB REPS [OFFSET]   anonymous mapping, MADV_HUGEPAGE (faults + zeroes + copies)
 *   fill hugetlb  FILE MIB REPS [OFFSET]   memfd_create(MFD_HUGETLB) mapping (needs MIB/2 free pool pages)
 *   fill prefault FILE MIB REPS [OFFSET]   anonymous MADV_HUGEPAGE, touched before timing (copy only)
 * reading from byte OFFSET of FILE (default 0, rounded down to 4 KiB).
 * The first repetition warms the page cache and is not printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define HUGE (2UL << 20)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "fill: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: fill thp|hugetlb|prefault FILE MIB REPS [OFFSET]\n");
        return 2;
    }
    const char *mode = argv[1];
    size_t len = (size_t)atol(argv[3]) << 20;
    int reps = atoi(argv[4]);
    off_t base = argc == 6 ? (off_t)(atoll(argv[5]) & ~4095LL) : 0;
    len = (len + HUGE - 1) & ~(HUGE - 1);
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) die("open");

    for (int r = 0; r <= reps; r++) {
        char *p;
        int mfd = -1;
        size_t maplen = len;
        if (strcmp(mode, "hugetlb") == 0) {
            mfd = memfd_create("fill", MFD_HUGETLB | MFD_CLOEXEC);
            if (mfd < 0) die("memfd_create(MFD_HUGETLB)");
            if (ftruncate(mfd, (off_t)len) < 0) die("ftruncate");
            p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
            if (p == MAP_FAILED) die("mmap hugetlb (pool too small?)");
        } else {
            maplen = len + HUGE;
            char *raw = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (raw == MAP_FAILED) die("mmap");
            p = (char *)(((uintptr_t)raw + HUGE - 1) & ~(HUGE - 1));
            /* trim to exactly the aligned region */
            if (p != raw) munmap(raw, (size_t)(p - raw));
            size_t tail = (size_t)((raw + maplen) - (p + len));
            if (tail) munmap(p + len, tail);
            maplen = len;
            if (madvise(p, len, MADV_HUGEPAGE) < 0) die("madvise(MADV_HUGEPAGE)");
            if (strcmp(mode, "prefault") == 0) memset(p, 1, len);
            else if (strcmp(mode, "thp") != 0) { fprintf(stderr, "fill: bad mode %s\n", mode); return 2; }
        }
        double t0 = now_ms();
        size_t done = 0;
        while (done < len) {
            ssize_t n = pread(fd, p + done, len - done, base + (off_t)done);
            if (n < 0) { if (errno == EINTR) continue; die("pread"); }
            if (n == 0) { fprintf(stderr, "fill: file shorter than offset + %zu MiB\n", len >> 20); return 1; }
            done += (size_t)n;
        }
        double t1 = now_ms();
        if (r > 0) printf("%.4f\n", t1 - t0);
        munmap(p, maplen);
        if (mfd >= 0) close(mfd);
    }
    return 0;
}
