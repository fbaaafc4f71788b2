// MariaDB Connector/Node.js (npm `mariadb`) through ferry, run by tests/tests/proxy_node.rs. This
// connector pipelines: it writes every command of a Promise.all before reading any answer. Rounds
// of 50 pipelined queries and 50 pipelined prepared executes run on one connection while the
// test drains its backend (through ferry's admin endpoint, after round 5), so the replay
// migration happens with commands queued behind the one in flight. Every answer must still be
// right, in order, with the session state (@v, @@time_zone) intact.
// Prints one JSON object with what it saw.
//
// Arguments: PORT USER PASSWORD ADMIN_PORT BACKEND.
'use strict';
const http = require('http');
const mariadb = require('mariadb');

function drain(adminPort, backend) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: Number(adminPort), method: 'POST',
        path: `/api/backends/${backend}/drain`, timeout: 10000,
        // Without an admin token, ferry takes a POST only with a JSON content type.
        headers: { 'Content-Type': 'application/json' } },
      (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end();
  });
}

async function main() {
  const [port, user, password, adminPort, backend] = process.argv.slice(2);
  const r = { rounds: 0, wrong: 0, servers: [] };
  const c = await mariadb.createConnection({
    host: '127.0.0.1', port: Number(port), user, password, connectTimeout: 30000,
    queryTimeout: 30000, pipelining: true,
  });
  try {
    await c.query("set @v = 'kept', time_zone = '+04:00'");
    let moved = 0;
    for (let round = 1; round <= 400 && moved < 20; round++) {
      if (round === 6) r.drain_status = await drain(adminPort, backend);
      const texts = [];
      const prepared = [];
      for (let i = 0; i < 50; i++) {
        texts.push(c.query('select ? + 1 as n, @v as v, @@time_zone as tz, @@server_id as s', [i]));
        prepared.push(c.execute('select ? * 2 as n, @v as v', [i]));
      }
      const [a, b] = await Promise.all([Promise.all(texts), Promise.all(prepared)]);
      for (let i = 0; i < 50; i++) {
        const t = a[i][0];
        const p = b[i][0];
        if (Number(t.n) !== i + 1 || t.v !== 'kept' || t.tz !== '+04:00'
            || Number(p.n) !== i * 2 || p.v !== 'kept') {
          r.wrong += 1;
        }
      }
      const servers = new Set(a.map((rows) => Number(rows[0].s)));
      for (const s of servers) if (!r.servers.includes(s)) r.servers.push(s);
      if (r.servers.length > 1) moved += 1;
      r.rounds = round;
    }
  } finally {
    await c.end();
  }
  console.log(JSON.stringify(r));
}

main().catch((e) => { console.error(e); process.exit(1); });
