-- New connections, for sysbench 1.0: one event = connect (TLS) + log in + one point select + close.
--   SELECT * FROM mytable WHERE ID = <uniform random 1..--id-max>
-- bench/login.py runs it, in a folder holding cacert.pem and, for cold token logins, one file of
-- tokens per thread (tokens-<thread>.txt, one a line: each connection presents the next one).
--
-- sysbench's own driver cannot do this: drv:connect() takes no arguments and its MySQL driver
-- reads --mysql-user/--mysql-password once, so every connection would log in with one password.
-- Instead this calls libmariadb (the client library sysbench itself is linked with) through
-- LuaJIT's FFI: still a C client, with sysbench's threads, timer and latency histogram.
--
-- By hand (password login; for a token login add --clear-text=on and --password=<token>):
--   sysbench bench/login.lua --host=127.0.0.1 --port=P --user=user2 --password=... \
--     --db=user_database2 --threads=8 --time=5 --histogram=on run

local ffi = require("ffi")

ffi.cdef [[
typedef struct st_mysql MYSQL;
typedef struct st_mysql_res MYSQL_RES;
MYSQL *mysql_init(MYSQL *mysql);
int mysql_options(MYSQL *mysql, int option, const void *arg);
char mysql_ssl_set(MYSQL *mysql, const char *key, const char *cert, const char *ca,
                   const char *capath, const char *cipher);
MYSQL *mysql_real_connect(MYSQL *mysql, const char *host, const char *user, const char *passwd,
                          const char *db, unsigned int port, const char *unix_socket,
                          unsigned long clientflag);
int mysql_query(MYSQL *mysql, const char *q);
MYSQL_RES *mysql_store_result(MYSQL *mysql);
char **mysql_fetch_row(MYSQL_RES *result);
void mysql_free_result(MYSQL_RES *result);
void mysql_close(MYSQL *sock);
unsigned int mysql_errno(MYSQL *mysql);
const char *mysql_error(MYSQL *mysql);
void *mysql_client_find_plugin(MYSQL *mysql, const char *name, int type);
int usleep(unsigned int usec);
]]

local mariadb = ffi.load("libmariadb.so.3")

-- enum mysql_option in /usr/include/mariadb/mysql.h (Connector/C 3.3, Debian 12's libmariadb3).
local MYSQL_OPT_CONNECT_TIMEOUT = 0
local MYSQL_ENABLE_CLEARTEXT_PLUGIN = 36
local MYSQL_CLIENT_AUTHENTICATION_PLUGIN = 2  -- mysql/client_plugin.h

sysbench.cmdline.options = {
   host = {"server address", "127.0.0.1"},
   port = {"server port", 3306},
   user = {"user to log in as", ""},
   password = {"password, or the db-auth token for every connection (warm token cache)", ""},
   db = {"database", ""},
   tls = {"TLS with cacert.pem from the working directory", true},
   clear_text = {"allow the mysql_clear_password plugin (token login)", false},
   token_files = {"read a token per connection from tokens-<thread>.txt (cold token cache)",
                  false},
   id_max = {"largest ID to select (rows per tenant)", 1000},
   check_tls = {"print the session's Ssl_cipher once (connections straight to MariaDB)", false},
}

local timeout = ffi.new("unsigned int[1]", 10)
local enable = ffi.new("char[1]", 1)

-- Opens and logs in; returns the handle (always mysql_close() it) and whether that worked.
local function connect(secret)
   local opt = sysbench.opt
   local con = mariadb.mysql_init(nil)
   mariadb.mysql_options(con, MYSQL_OPT_CONNECT_TIMEOUT, timeout)
   if opt.clear_text then
      -- Connector/C 3.3 sends a clear-text password without it; MySQL's libmysqlclient needs it.
      mariadb.mysql_options(con, MYSQL_ENABLE_CLEARTEXT_PLUGIN, enable)
   end
   if opt.tls then
      -- The CA only: the write-up's access function presents no client certificate.
      mariadb.mysql_ssl_set(con, nil, nil, "cacert.pem", nil, nil)
   end
   local is_connected =
      mariadb.mysql_real_connect(con, opt.host, opt.user, secret, opt.db, opt.port, nil, 0) ~= nil
   return con, is_connected
end

local function query(con, sql)
   if mariadb.mysql_query(con, sql) ~= 0 then
      return nil
   end
   return mariadb.mysql_store_result(con)
end

-- The password, or the next unused token of this thread (nil when there are none left).
local function next_secret()
   if tokens == nil then
      return sysbench.opt.password
   end
   local token = tokens[next_token]
   next_token = next_token + 1
   return token
end

-- One line that bench/login.py parses; empty means no TLS. One extra connection, not an event.
local function print_tls_cipher()
   local con, is_connected = connect(sysbench.opt.password)
   local cipher = ""
   local result = is_connected and query(con, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
   if result then
      local row = mariadb.mysql_fetch_row(result)
      if row ~= nil and row[1] ~= nil then
         cipher = ffi.string(row[1])
      end
      mariadb.mysql_free_result(result)
   end
   mariadb.mysql_close(con)
   io.stdout:write(string.format("tls-cipher: [%s]\n", cipher))
end

-- Once, before the threads start. libmariadb loads an auth plugin on first use, and threads that
-- race to load it fail ("Plugin mysql_clear_password could not be loaded: it is already loaded")
-- and send an empty password: load it here.
function init()
   if sysbench.opt.clear_text then
      local con = mariadb.mysql_init(nil)
      if mariadb.mysql_client_find_plugin(con, "mysql_clear_password",
                                          MYSQL_CLIENT_AUTHENTICATION_PLUGIN) == nil then
         error("cannot load the mysql_clear_password client plugin: "
               .. ffi.string(mariadb.mysql_error(con)))
      end
      mariadb.mysql_close(con)
   end
end

function thread_init()
   tokens, next_token = nil, 1
   if sysbench.opt.token_files then
      tokens = {}
      for line in io.lines(string.format("tokens-%d.txt", sysbench.tid)) do
         tokens[#tokens + 1] = line
      end
   end
   failures, first_failure, exhausted = 0, nil, 0
   if sysbench.opt.check_tls and sysbench.tid == 0 then
      print_tls_cipher()
   end
end

function thread_done()
   -- One line per thread that bench/login.py parses: sysbench does not see these errors.
   -- One write per line, so that lines from threads finishing together do not interleave.
   io.stdout:write(string.format("login-thread: %d failures=%d exhausted=%d first=[%s]\n",
                                 sysbench.tid, failures, exhausted, first_failure or ""))
end

function event()
   local secret = next_secret()
   if secret == nil then
      -- Out of distinct tokens: reusing one would hit the cache. Counted and reported.
      exhausted = exhausted + 1
      ffi.C.usleep(1000)
      return
   end
   local con, ok = connect(secret)
   if ok then
      local result = query(con, string.format("SELECT * FROM mytable WHERE ID = %d",
                                              sysbench.rand.uniform(1, sysbench.opt.id_max)))
      ok = result ~= nil
      if ok then
         mariadb.mysql_free_result(result)
      end
   end
   if not ok then
      failures = failures + 1
      first_failure = first_failure or string.format("%d %s", mariadb.mysql_errno(con),
                                                      ffi.string(mariadb.mysql_error(con)))
   end
   mariadb.mysql_close(con)
end
