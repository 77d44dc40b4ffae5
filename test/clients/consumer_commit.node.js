// node-postgres: group "billing" invoices each order; effects and offsets commit together
const { Client } = require('pg');

async function handle(client, key, type, payload) {
  if (type === 'Placed') {
    await client.query('INSERT INTO invoices (order_key, n) VALUES ($1, $2)', [key, payload.n]);
  }
}

async function main() {
  const client = new Client(); // PGHOST, PGDATABASE, ... from the environment
  await client.connect();
  for (;;) {
    // node-postgres runs each query in a transaction of its own unless told otherwise
    await client.query('BEGIN');
    try {
      const { rows } = await client.query(
        "SELECT shard, seq, key, type, payload FROM event_log.poll($1, $2, 1000, wait => '30s')",
        ['billing', 'shop.orders']);
      const last = new Map();
      for (const e of rows) {
        await handle(client, e.key, e.type, e.payload); // same transaction: exactly-once effects
        last.set(e.shard, e.seq); // seq is a bigint: a string in node-postgres
      }
      for (const [shard, seq] of last) {
        await client.query('SELECT event_log.commit_offset($1, $2, $3, $4)',
          ['billing', 'shop.orders', shard, seq]);
      }
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK');
      throw e;
    }
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exitCode = 1;
});
