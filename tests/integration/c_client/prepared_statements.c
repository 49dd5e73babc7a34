/* MariaDB Connector/C's binary prepared statements against a server or the proxy in transaction
 * mode. tests/integration/test_prepared_statements_multiplexed.py builds it with gcc
 * (mariadb_config --cflags --libs) and compares what it prints, direct and through the proxy.
 *
 *   prepared_statements HOST PORT USER PASSWORD DATABASE STEP
 *
 * STEP is one of
 *   moved     a statement executed (types sent), then again without types while a second
 *             connection holds a transaction open (through the proxy: on another backend)
 *   longdata  mysql_stmt_send_long_data in three chunks, the second connection holding a
 *             transaction first, then the execute; twice (the second after mysql_stmt_reset)
 *   cursor    a read-only cursor fetched 7 rows at a time (COM_STMT_FETCH) while a second
 *             connection starts a transaction and a query runs on the first between fetches;
 *             then the statement is executed again and closed
 *
 * Connection ids go to stderr ("ids first N last M holder H"); stdout has only what must be
 * the same direct and through the proxy. Any error prints "error CODE MESSAGE" and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

static void fail(MYSQL *mysql, MYSQL_STMT *stmt) {
    if (stmt != NULL)
        printf("error %u %s\n", mysql_stmt_errno(stmt), mysql_stmt_error(stmt));
    else
        printf("error %u %s\n", mysql_errno(mysql), mysql_error(mysql));
    exit(1);
}

static MYSQL *connect_to(char **argv) {
    MYSQL *mysql = mysql_init(NULL);
    if (!mysql_real_connect(mysql, argv[1], argv[3], argv[4], argv[5], atoi(argv[2]), NULL, 0))
        fail(mysql, NULL);
    return mysql;
}

static void run(MYSQL *mysql, const char *sql) {
    if (mysql_query(mysql, sql))
        fail(mysql, NULL);
    MYSQL_RES *result = mysql_store_result(mysql);
    if (result != NULL)
        mysql_free_result(result);
}

static unsigned long long connection_id(MYSQL *mysql) {
    if (mysql_query(mysql, "SELECT CONNECTION_ID()"))
        fail(mysql, NULL);
    MYSQL_RES *result = mysql_store_result(mysql);
    MYSQL_ROW row = mysql_fetch_row(result);
    unsigned long long id = strtoull(row[0], NULL, 10);
    mysql_free_result(result);
    return id;
}

static MYSQL_STMT *prepare(MYSQL *mysql, const char *sql) {
    MYSQL_STMT *stmt = mysql_stmt_init(mysql);
    if (mysql_stmt_prepare(stmt, sql, strlen(sql)))
        fail(mysql, stmt);
    return stmt;
}

/* Result columns: BIGINT connection id, BIGINT number, text (NUL-terminated after fetch). */
struct row {
    long long connection;
    long long number;
    char text[64];
    unsigned long text_length;
};

static void bind_row(MYSQL *mysql, MYSQL_STMT *stmt, struct row *row, MYSQL_BIND out[3]) {
    memset(out, 0, 3 * sizeof(MYSQL_BIND));
    out[0].buffer_type = MYSQL_TYPE_LONGLONG;
    out[0].buffer = &row->connection;
    out[1].buffer_type = MYSQL_TYPE_LONGLONG;
    out[1].buffer = &row->number;
    out[2].buffer_type = MYSQL_TYPE_STRING;
    out[2].buffer = row->text;
    out[2].buffer_length = sizeof(row->text) - 1;
    out[2].length = &row->text_length;
    if (mysql_stmt_bind_result(stmt, out))
        fail(mysql, stmt);
}

static int fetch_row(MYSQL *mysql, MYSQL_STMT *stmt, struct row *row) {
    int status = mysql_stmt_fetch(stmt);
    if (status == 1)
        fail(mysql, stmt);
    if (status == MYSQL_NO_DATA)
        return 0;
    row->text[row->text_length] = '\0';
    return 1;
}

static const char *relation(long long a, long long b) { return a == b ? "same" : "other"; }

static void moved(char **argv) {
    MYSQL *mysql = connect_to(argv), *holder = connect_to(argv);
    MYSQL_STMT *stmt = prepare(mysql, "SELECT CONNECTION_ID(), ? * 2, CONCAT(?, '!')");
    long long number = 21;
    char text[16] = "abc";
    unsigned long text_length = 3;
    MYSQL_BIND in[2];
    memset(in, 0, sizeof(in));
    in[0].buffer_type = MYSQL_TYPE_LONGLONG;
    in[0].buffer = &number;
    in[1].buffer_type = MYSQL_TYPE_STRING;
    in[1].buffer = text;
    in[1].length = &text_length;
    struct row row, first;
    MYSQL_BIND out[3];
    if (mysql_stmt_bind_param(stmt, in) || mysql_stmt_execute(stmt))
        fail(mysql, stmt);
    bind_row(mysql, stmt, &row, out);
    fetch_row(mysql, stmt, &row);
    first = row;
    printf("first %lld %s\n", row.number, row.text);
    mysql_stmt_free_result(stmt);
    /* Connector/C sends the parameter types on the first execute only. */
    run(holder, "BEGIN");
    long long holder_id = (long long)connection_id(holder);
    for (int round = 0; round < 3; round++) {
        number = 100 + round;
        strcpy(text, round % 2 ? "xyz" : "hello");
        text_length = strlen(text);
        if (mysql_stmt_execute(stmt))
            fail(mysql, stmt);
        fetch_row(mysql, stmt, &row);
        printf("again %lld %s\n", row.number, row.text);
        mysql_stmt_free_result(stmt);
    }
    /* Straight to a server these are one connection; through the proxy the last is another. */
    fprintf(stderr, "ids first %lld last %lld holder %lld\n", first.connection, row.connection,
            holder_id);
    run(holder, "COMMIT");
    mysql_stmt_close(stmt);
    mysql_close(holder);
    mysql_close(mysql);
}

static void long_data(char **argv) {
    MYSQL *mysql = connect_to(argv), *holder = connect_to(argv);
    MYSQL_STMT *stmt = prepare(mysql, "SELECT CONNECTION_ID(), LENGTH(?), CONCAT(LEFT(?, 4), ?)");
    char chunk[100000];
    char tail[8] = "-end";
    unsigned long tail_length = 4;
    MYSQL_BIND in[3];
    memset(in, 0, sizeof(in));
    in[0].buffer_type = MYSQL_TYPE_BLOB;
    in[1].buffer_type = MYSQL_TYPE_STRING;
    in[2].buffer_type = MYSQL_TYPE_STRING;
    in[2].buffer = tail;
    in[2].length = &tail_length;
    if (mysql_stmt_bind_param(stmt, in))
        fail(mysql, stmt);
    struct row row;
    MYSQL_BIND out[3];
    for (int round = 0; round < 2; round++) {
        if (round == 0)
            run(holder, "BEGIN"); /* the backend the PREPARE ran on, through the proxy */
        for (int part = 0; part < 3; part++) {
            memset(chunk, 'a' + part + round, sizeof(chunk));
            if (mysql_stmt_send_long_data(stmt, 0, chunk, sizeof(chunk)))
                fail(mysql, stmt);
            if (mysql_stmt_send_long_data(stmt, 1, chunk, part == 0 ? 2 : 1))
                fail(mysql, stmt);
        }
        if (round == 0)
            run(holder, "COMMIT");
        if (mysql_stmt_execute(stmt))
            fail(mysql, stmt);
        bind_row(mysql, stmt, &row, out);
        fetch_row(mysql, stmt, &row);
        printf("long data %lld %s\n", row.number, row.text);
        mysql_stmt_free_result(stmt);
        if (mysql_stmt_reset(stmt))
            fail(mysql, stmt);
    }
    mysql_stmt_close(stmt);
    mysql_close(holder);
    mysql_close(mysql);
}

static void cursor(char **argv) {
    MYSQL *mysql = connect_to(argv), *holder = connect_to(argv);
    MYSQL_STMT *stmt = prepare(mysql, "SELECT CONNECTION_ID(), seq, CONCAT('row', seq)"
                                      " FROM seq_1_to_100 WHERE seq <= ?");
    unsigned long cursor_type = CURSOR_TYPE_READ_ONLY, prefetch = 7;
    mysql_stmt_attr_set(stmt, STMT_ATTR_CURSOR_TYPE, &cursor_type);
    mysql_stmt_attr_set(stmt, STMT_ATTR_PREFETCH_ROWS, &prefetch);
    long long limit = 50;
    MYSQL_BIND in[1];
    memset(in, 0, sizeof(in));
    in[0].buffer_type = MYSQL_TYPE_LONGLONG;
    in[0].buffer = &limit;
    struct row row;
    MYSQL_BIND out[3];
    if (mysql_stmt_bind_param(stmt, in))
        fail(mysql, stmt);
    for (int round = 0; round < 2; round++) {
        if (mysql_stmt_execute(stmt))
            fail(mysql, stmt);
        bind_row(mysql, stmt, &row, out);
        long long rows = 0, sum = 0, cursor_backend = -1;
        const char *during = "none";
        while (fetch_row(mysql, stmt, &row)) {
            rows++;
            sum += row.number;
            cursor_backend = row.connection;
            if (rows == 10 && round == 0) {
                run(holder, "BEGIN"); /* would take the backend if the cursor let it go */
                during = relation(cursor_backend, (long long)connection_id(mysql));
            }
        }
        printf("cursor rows %lld sum %lld last %s\n", rows, sum, row.text);
        if (round == 0) {
            printf("query during the cursor: %s backend\n", during);
            run(holder, "COMMIT");
        }
        mysql_stmt_free_result(stmt);
        limit = 20;
    }
    if (mysql_stmt_close(stmt))
        fail(mysql, NULL);
    printf("after close %llu\n", connection_id(mysql) > 0 ? 1ULL : 0ULL);
    mysql_close(holder);
    mysql_close(mysql);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT USER PASSWORD DATABASE STEP\n", argv[0]);
        return 2;
    }
    const char *step = argv[6];
    if (strcmp(step, "moved") == 0)
        moved(argv);
    else if (strcmp(step, "longdata") == 0)
        long_data(argv);
    else if (strcmp(step, "cursor") == 0)
        cursor(argv);
    else {
        fprintf(stderr, "unknown step %s\n", step);
        return 2;
    }
    return 0;
}
