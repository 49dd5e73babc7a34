// node mysql2 reads a JSON and a POINT column, by text query and by prepared statement, and
// prints the column metadata and the values it got as JSON, for
// tests/integration/test_node_mysql2.py to compare straight to MariaDB and through the proxy.
//
//   MYSQL_PWD=... node json_metadata.js HOST PORT USER DATABASE
"use strict";
const mysql = require("mysql2/promise");

const SQL = "SELECT id, doc, ST_AsText(place) AS place_text, place FROM json_doc ORDER BY id";
const FIELD_KEYS = [
  "catalog", "schema", "name", "orgName", "table", "orgTable", "characterSet",
  "columnLength", "columnType", "type", "flags", "decimals",
  // From MariaDB's extended metadata (MARIADB_CLIENT_EXTENDED_METADATA), which mysql2 asks for.
  "extendedTypeName", "extendedFormat",
];

function describeFields(fields) {
  return fields.map((field) => Object.fromEntries(FIELD_KEYS.map((key) => [key, field[key]])));
}

function describeRows(rows) {
  // POINT values arrive as bytes: hex keeps them comparable as text.
  return rows.map((row) =>
    Object.fromEntries(
      Object.entries(row).map(([key, value]) => [
        key,
        Buffer.isBuffer(value) ? value.toString("hex") : value,
      ]),
    ),
  );
}

async function main() {
  const [host, port, user, database] = process.argv.slice(2);
  const connection = await mysql.createConnection({
    host, port: Number(port), user, database, password: process.env.MYSQL_PWD,
  });
  try {
    const out = {};
    for (const [protocol, run] of [["text", "query"], ["binary", "execute"]]) {
      const [rows, fields] = await connection[run](SQL);
      out[protocol] = { fields: describeFields(fields), rows: describeRows(rows) };
    }
    process.stdout.write(JSON.stringify(out, null, 1) + "\n");
  } finally {
    await connection.end();
  }
}

main().catch((error) => {
  process.stdout.write(`error ${error.errno} ${error.message}\n`);
  process.exit(1);
});
