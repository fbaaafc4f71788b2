// mysql2 (Node.js) through ferry, run by tests/tests/proxy_node.rs. mysql2 is a pure-JavaScript
// client: prepared statements by `execute` (cached per connection), multi-statements, LOAD DATA
// LOCAL from a stream, COM_CHANGE_USER, COM_RESET_CONNECTION, a 17 MB blob both ways.
// Prints one JSON object with what it saw.
//
// Arguments: PORT USER PASSWORD OTHER_USER OTHER_PASSWORD.
'use strict';
const crypto = require('crypto');
const { Readable } = require('stream');
const mysql = require('mysql2/promise');

async function main() {
  const [port, user, password, otherUser, otherPassword] = process.argv.slice(2);
  const r = {};
  const c = await mysql.createConnection({
    host: '127.0.0.1', port: Number(port), user, password,
    multipleStatements: true, connectTimeout: 30000,
    infileStreamFactory: () => {
      let csv = '';
      for (let i = 2000; i < 3000; i++) csv += `${i},l${i}\n`;
      return Readable.from([Buffer.from(csv)]);
    },
  });
  try {
    await c.query('create database if not exists nd');
    await c.changeUser({ user, password, database: 'nd' });
    await c.query('create table t (id int primary key, v varchar(20), b longblob)');
    [[r.db]] = await c.query({ sql: 'select database()', rowsAsArray: true });

    // Binary protocol: the statement is prepared once and executed again, with a NULL.
    for (let i = 1; i <= 3; i++) {
      await c.execute('insert into t (id, v) values (?, ?)', [i, i === 2 ? null : `v${i}`]);
    }
    const [nullRows] = await c.execute('select v from t where id = ?', [2]);
    r.null = nullRows[0].v === null;

    const [multi] = await c.query({ sql: 'select 1; select 2, "two"', rowsAsArray: true });
    r.multi = multi;

    const [load] = await c.query(
      "load data local infile 'rows.csv' into table t fields terminated by ',' (id, v)");
    r.loaded = load.affectedRows;

    await c.beginTransaction();
    await c.query("insert into t (id, v) values (5000, 'x')");
    await c.rollback();
    await c.beginTransaction();
    await c.query("insert into t (id, v) values (5001, 'y')");
    await c.commit();

    try { await c.query('selec 1'); r.error = 0; } catch (e) { r.error = e.errno; }
    [[[r.after_error]]] = await c.query({ sql: 'select 42', rowsAsArray: true });

    const blob = Buffer.alloc(17 * 1024 * 1024 + 33);
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 31 + 7) & 0xff;
    await c.execute('update t set b = ? where id = 1', [blob]);
    const [[back]] = await c.query('select b from t where id = 1');
    r.blob_same = Buffer.compare(back.b, blob) === 0;
    r.blob_sha = crypto.createHash('sha256').update(back.b).digest('hex').slice(0, 16);

    [[r.count]] = await c.query({ sql: 'select count(*), cast(sum(id) as char) from t', rowsAsArray: true });

    // COM_CHANGE_USER to another account: the session is that user's, with its own rights; a
    // wrong password is refused and the connection is closed by the server.
    await c.query("set @x = 7");
    await c.changeUser({ user: otherUser, password: otherPassword, database: 'nd' });
    [[r.changed]] = await c.query({ sql: 'select current_user(), @x is null, database()', rowsAsArray: true });
    try { await c.query('drop table t'); r.other_denied = 0; } catch (e) { r.other_denied = e.errno; }
    [[[r.still_there]]] = await c.query({ sql: 'select count(*) from t', rowsAsArray: true });

    // COM_RESET_CONNECTION drops session state and keeps the connection.
    await c.query("set @y = 9");
    await c.reset();
    [[r.reset]] = await c.query({ sql: 'select @y is null, current_user()', rowsAsArray: true });

    try {
      await c.changeUser({ user, password: password + 'wrong' });
      r.bad_change = 0;
    } catch (e) { r.bad_change = e.errno; }
  } finally {
    c.destroy();
  }
  console.log(JSON.stringify(r));
}

main().catch((e) => { console.error(e); process.exit(1); });
