-- Point selects by primary key over one tenant's table, for sysbench 1.0:
--   SELECT * FROM mytable WHERE ID = <uniform random 1..--id-max>
-- Text protocol (COM_QUERY), as the write-up's access function sends it; one event = one query.
-- bench/point_select.py runs it; by hand:
--   sysbench bench/point_select.lua --mysql-host=127.0.0.1 --mysql-port=P --mysql-user=user1 \
--     --mysql-password=... --mysql-db=user_database1 --threads=8 --time=5 --histogram=on run

sysbench.cmdline.options = {
   id_max = {"largest ID to select (rows per tenant)", 1000},
   check_tls = {"print the session's Ssl_cipher once (connections straight to MariaDB)", false},
}

function thread_init()
   drv = sysbench.sql.driver()
   con = drv:connect()
   if sysbench.opt.check_tls and sysbench.tid == 0 then
      local rs = con:query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
      local row = rs:fetch_row()
      -- One line that bench/sysbench_run.py parses; empty means no TLS.
      print(string.format("tls-cipher: [%s]", row and row[2] or ""))
   end
end

function thread_done()
   con:disconnect()
end

function event()
   con:query(string.format("SELECT * FROM mytable WHERE ID = %d",
                           sysbench.rand.uniform(1, sysbench.opt.id_max)))
end
