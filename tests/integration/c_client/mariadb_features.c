/* MariaDB Connector/C against a server or the proxy: the features that ride on MariaDB's
 * extended capabilities. tests/integration/test_mariadb_capabilities.py builds it with gcc
 * (mariadb_config --cflags --libs) and compares what it prints, direct and through the proxy.
 *
 *   mariadb_features HOST PORT USER PASSWORD DATABASE STEP
 *
 * STEP is one of
 *   caps       the extended capabilities the server side offered (of the four the proxy relays)
 *   bulk       COM_STMT_BULK_EXECUTE of three rows into bulk_rows (v)
 *   returning  the same with INSERT ... RETURNING id, v
 *   json       SELECT of a JSON and a POINT column: type names from the extended metadata
 *   cache      one prepared SELECT executed twice (the second may skip the column definitions)
 *   progress   ALTER TABLE progress_me with progress reports (one line per stage reported)
 *
 * Every line printed must be the same direct and through the proxy; auto-increment ids are
 * printed relative to the first one. Any error prints "error CODE MESSAGE" and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#define RELAYED_EXTENDED_CAPABILITIES \
    ((MARIADB_CLIENT_PROGRESS | MARIADB_CLIENT_STMT_BULK_OPERATIONS | \
      MARIADB_CLIENT_EXTENDED_METADATA | MARIADB_CLIENT_CACHE_METADATA) >> 32)
#define ROWS 3

static void fail(MYSQL *mysql, MYSQL_STMT *stmt) {
    if (stmt != NULL)
        printf("error %u %s\n", mysql_stmt_errno(stmt), mysql_stmt_error(stmt));
    else
        printf("error %u %s\n", mysql_errno(mysql), mysql_error(mysql));
    exit(1);
}

static void print_extended_capabilities(MYSQL *mysql) {
    unsigned long server = 0, extended = 0;
    mariadb_get_infov(mysql, MARIADB_CONNECTION_SERVER_CAPABILITIES, &server);
    mariadb_get_infov(mysql, MARIADB_CONNECTION_EXTENDED_SERVER_CAPABILITIES, &extended);
    /* Connector/C reads the extended ones only from a server that clears CLIENT_MYSQL. */
    if (server & CLIENT_MYSQL)
        extended = 0;
    printf("extended capabilities 0x%lx\n", extended & (unsigned long)RELAYED_EXTENDED_CAPABILITIES);
}

/* Result columns (BIGINT id, text), the text NUL-terminated by the caller after each fetch. */
static void bind_id_and_text(MYSQL_BIND out[2], long long *id, char *text, size_t size,
                             unsigned long *length) {
    memset(out, 0, 2 * sizeof(MYSQL_BIND));
    out[0].buffer_type = MYSQL_TYPE_LONGLONG;
    out[0].buffer = id;
    out[1].buffer_type = MYSQL_TYPE_STRING;
    out[1].buffer = text;
    out[1].buffer_length = size - 1;
    out[1].length = length;
}

static void bulk_insert(MYSQL *mysql, int is_returning) {
    const char *sql = is_returning ? "INSERT INTO bulk_rows (v) VALUES (?) RETURNING id, v"
                                   : "INSERT INTO bulk_rows (v) VALUES (?)";
    char *values[ROWS] = {"a", "bb", "ccc"};
    unsigned long lengths[ROWS] = {1, 2, 3};
    unsigned int array_size = ROWS;
    MYSQL_BIND bind;
    MYSQL_STMT *stmt = mysql_stmt_init(mysql);
    if (mysql_stmt_prepare(stmt, sql, strlen(sql)))
        fail(mysql, stmt);
    memset(&bind, 0, sizeof(bind));
    bind.buffer_type = MYSQL_TYPE_STRING;
    bind.buffer = values;
    bind.length = lengths;
    /* Column-wise arrays of ROWS values: Connector/C sends them in one COM_STMT_BULK_EXECUTE. */
    mysql_stmt_attr_set(stmt, STMT_ATTR_ARRAY_SIZE, &array_size);
    if (mysql_stmt_bind_param(stmt, &bind) || mysql_stmt_execute(stmt))
        fail(mysql, stmt);
    printf("affected rows %llu\n", (unsigned long long)mysql_stmt_affected_rows(stmt));
    if (is_returning) {
        long long id = 0, first_id = 0;
        char v[32];
        unsigned long v_length = 0;
        MYSQL_BIND out[2];
        int row = 0;
        bind_id_and_text(out, &id, v, sizeof(v), &v_length);
        printf("returned columns %u\n", mysql_stmt_field_count(stmt));
        if (mysql_stmt_bind_result(stmt, out) || mysql_stmt_store_result(stmt))
            fail(mysql, stmt);
        while (mysql_stmt_fetch(stmt) == 0) {
            v[v_length] = '\0';
            if (row++ == 0)
                first_id = id;
            printf("returned id +%lld v %s\n", id - first_id, v);
        }
    }
    mysql_stmt_close(stmt);
}

static void print_fields(MYSQL_FIELD *fields, unsigned int count) {
    for (unsigned int i = 0; i < count; i++) {
        MARIADB_CONST_STRING data_type = {NULL, 0}, format = {NULL, 0};
        mariadb_field_attr(&data_type, &fields[i], MARIADB_FIELD_ATTR_DATA_TYPE_NAME);
        mariadb_field_attr(&format, &fields[i], MARIADB_FIELD_ATTR_FORMAT_NAME);
        printf("field %s type %d data_type_name '%.*s' format_name '%.*s'\n", fields[i].name,
               fields[i].type, (int)data_type.length, data_type.str ? data_type.str : "",
               (int)format.length, format.str ? format.str : "");
    }
}

static void select_json(MYSQL *mysql) {
    const char *sql = "SELECT id, doc, ST_AsText(place) AS place_text, place FROM json_doc ORDER BY id";
    MYSQL_RES *result;
    MYSQL_ROW row;
    if (mysql_query(mysql, sql) || (result = mysql_store_result(mysql)) == NULL)
        fail(mysql, NULL);
    print_fields(mysql_fetch_fields(result), mysql_num_fields(result));
    while ((row = mysql_fetch_row(result)) != NULL)
        printf("row %s %s %s\n", row[0], row[1], row[2]);
    mysql_free_result(result);
}

static void execute_twice(MYSQL *mysql) {
    const char *sql = "SELECT id, doc FROM json_doc ORDER BY id";
    MYSQL_STMT *stmt = mysql_stmt_init(mysql);
    if (mysql_stmt_prepare(stmt, sql, strlen(sql)))
        fail(mysql, stmt);
    for (int round = 1; round <= 2; round++) {
        long long id = 0;
        char doc[256];
        unsigned long doc_length = 0;
        MYSQL_BIND out[2];
        MYSQL_RES *metadata;
        if (mysql_stmt_execute(stmt))
            fail(mysql, stmt);
        metadata = mysql_stmt_result_metadata(stmt);
        printf("execute %d\n", round);
        print_fields(mysql_fetch_fields(metadata), mysql_num_fields(metadata));
        mysql_free_result(metadata);
        bind_id_and_text(out, &id, doc, sizeof(doc), &doc_length);
        if (mysql_stmt_bind_result(stmt, out) || mysql_stmt_store_result(stmt))
            fail(mysql, stmt);
        while (mysql_stmt_fetch(stmt) == 0) {
            doc[doc_length] = '\0';
            printf("row %lld %s\n", id, doc);
        }
        mysql_stmt_free_result(stmt);
    }
    mysql_stmt_close(stmt);
}

static unsigned int last_stage = 0;

static void report_progress(const MYSQL *mysql, unsigned int stage, unsigned int max_stage,
                            double progress, const char *proc_info,
                            unsigned int proc_info_length) {
    (void)mysql;
    (void)progress; /* how far a stage got depends on timing; which stages came does not */
    if (stage != last_stage)
        printf("progress stage %u of %u: %.*s\n", stage, max_stage, (int)proc_info_length,
               proc_info);
    last_stage = stage;
}

static void alter_with_progress(MYSQL *mysql) {
    if (mysql_query(mysql, "SET progress_report_time = 1") ||
        mysql_query(mysql, "ALTER TABLE progress_me FORCE, ALGORITHM=COPY"))
        fail(mysql, NULL);
    printf("altered, affected rows %llu\n", (unsigned long long)mysql_affected_rows(mysql));
}

int main(int argc, char **argv) {
    MYSQL *mysql;
    const char *step;
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT USER PASSWORD DATABASE STEP\n", argv[0]);
        return 2;
    }
    step = argv[6];
    mysql = mysql_init(NULL);
    if (strcmp(step, "progress") == 0)
        mysql_optionsv(mysql, MYSQL_PROGRESS_CALLBACK, (void *)report_progress);
    if (!mysql_real_connect(mysql, argv[1], argv[3], argv[4], argv[5], atoi(argv[2]), NULL, 0))
        fail(mysql, NULL);
    if (strcmp(step, "caps") == 0)
        print_extended_capabilities(mysql);
    else if (strcmp(step, "bulk") == 0)
        bulk_insert(mysql, 0);
    else if (strcmp(step, "returning") == 0)
        bulk_insert(mysql, 1);
    else if (strcmp(step, "json") == 0)
        select_json(mysql);
    else if (strcmp(step, "cache") == 0)
        execute_twice(mysql);
    else if (strcmp(step, "progress") == 0)
        alter_with_progress(mysql);
    else {
        fprintf(stderr, "unknown step %s\n", step);
        return 2;
    }
    mysql_close(mysql);
    return 0;
}
