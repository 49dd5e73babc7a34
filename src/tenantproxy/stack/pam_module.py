"""``pam_tenantproxy.so``: the PAM module of the no-proxy cluster's token login, built at ``up``.

Why C and not ``pam_exec.so expose_authtok``: pam_exec hands the program at most
PAM_MAX_RESP_SIZE - 1 = 511 bytes of the password, and a db-auth token with its sealed session is
~1.3 KB. The module takes the whole token (``pam_get_authtok``, which asks MariaDB's auth_pam
conversation, i.e. the client's clear-text password), and asks the stack's db-login checker one
line over TCP: ``<cwd = the mariadbd's datadir> <token> <user>``; only ``OK`` lets the login in.
It runs inside MariaDB's ``auth_pam_tool`` (one process per login), so a login costs a fork, a
PAM start and one local TCP round trip, plus the checker's verification.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tenantproxy.errors import StackError

MODULE_FILE = "pam_tenantproxy.so"

SOURCE = r"""
#define PAM_SM_AUTH
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_TOKEN 8192

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n <= 0) return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Asks the checker on 127.0.0.1:port; 1 when it answers OK. */
static int checker_says_ok(int port, const char *line, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct timeval timeout = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char answer[3] = {0};
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
        write_all(fd, line, len) == 0) {
        while (got < sizeof answer) {
            ssize_t n = read(fd, answer + got, sizeof answer - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
    }
    close(fd);
    return got == 3 && memcmp(answer, "OK\n", 3) == 0;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)flags;
    if (argc != 1) return PAM_SERVICE_ERR;
    int port = atoi(argv[0]);
    const char *user = NULL, *token = NULL;
    char cwd[PATH_MAX];
    if (port <= 0 || port > 65535 || getcwd(cwd, sizeof cwd) == NULL) return PAM_SERVICE_ERR;
    if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL) return PAM_AUTH_ERR;
    if (pam_get_authtok(pamh, PAM_AUTHTOK, &token, NULL) != PAM_SUCCESS || token == NULL)
        return PAM_AUTH_ERR;
    size_t token_len = strlen(token);
    /* One line: a token or a user holding a space or a newline cannot be a valid one. */
    if (token_len == 0 || token_len > MAX_TOKEN || strpbrk(token, " \n") || strpbrk(user, " \n"))
        return PAM_AUTH_ERR;
    size_t len = strlen(cwd) + token_len + strlen(user) + 4;
    char *line = malloc(len);
    if (line == NULL) return PAM_BUF_ERR;
    snprintf(line, len, "%s %s %s\n", cwd, token, user);
    int ok = checker_says_ok(port, line, len - 1);
    free(line);
    return ok ? PAM_SUCCESS : PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)pamh; (void)flags; (void)argc; (void)argv;
    return PAM_SUCCESS;
}
"""


def build_module(directory: Path) -> Path:
    """Compiles the module into ``directory`` (gcc and libpam0g-dev: scripts/setup.sh)."""
    source = directory / "pam_tenantproxy.c"
    module = directory / MODULE_FILE
    source.write_text(SOURCE)
    argv = ["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(module), str(source), "-lpam"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StackError('gcc is missing: run scripts/setup.sh (noproxy_auth = "token")') from None
    if result.returncode != 0:
        raise StackError(f"building {MODULE_FILE} failed:\n{result.stderr.strip()[-2000:]}")
    return module
