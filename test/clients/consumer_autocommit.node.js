// node-postgres: group "audit", each poll committing what the previous one returned
const { Client } = require('pg');

function handle(type, payload) {
  console.log(type, JSON.stringify(payload));
}

async function main() {
  // node-postgres runs each query in a transaction of its own: each poll
  // commits when it returns
  const client = new Client(); // PGHOST, PGDATABASE, ... from the environment
  await client.connect();
  for (;;) {
    const { rows } = await client.query(
      "SELECT shard, seq, type, payload FROM event_log.poll($1, $2, 1000, wait => '30s', auto_commit => true)",
      ['audit', 'shop.orders']);
    for (const e of rows) handle(e.type, e.payload); // done before the next poll: at least once
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exitCode = 1;
});
