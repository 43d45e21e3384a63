/*
 * rkube's pause program: the process that holds a pod sandbox's namespaces.
 *
 * Behaves like Kubernetes' pause: SIGINT and SIGTERM make it exit 0, SIGCHLD
 * reaps every exited child (it is PID 1 when the pod shares its PID
 * namespace), and otherwise it sleeps in pause() forever. `-v` prints the
 * version. Built statically by build.rs so the image needs no libc.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RKUBE_PAUSE_VERSION
#define RKUBE_PAUSE_VERSION "3.10-rkube"
#endif

static void sigdown(int signo) {
    static const char msg[] = "pause: shutting down on signal\n";
    (void)signo;
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(0);
}

static void sigreap(int signo) {
    int saved = errno;
    (void)signo;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int install(int signo, void (*handler)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    return sigaction(signo, &sa, NULL);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            printf("pause.c %s\n", RKUBE_PAUSE_VERSION);
            return 0;
        }
    }
    if (install(SIGINT, sigdown, 0) < 0 || install(SIGTERM, sigdown, 0) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    if (install(SIGCHLD, sigreap, SA_NOCLDSTOP | SA_RESTART) < 0) {
        perror("pause: sigaction");
        return 2;
    }
    /* After the handlers: a caller may take this line as "ready". */
    if (getpid() != 1) {
        fprintf(stderr, "pause: warning: not running as PID 1\n");
    }
    for (;;) {
        pause();
    }
    fprintf(stderr, "pause: infinite loop terminated\n");
    return 42;
}
