// node-postgres: add an item to cart-7, unless it is checked out
const { Client } = require('pg');

const STREAM = 'shop.cart_events', CART = 'cart-7';
const item = { sku: 'fig', qty: 1 };

async function main() {
  const client = new Client(); // PGHOST, PGDATABASE, ... from the environment
  await client.connect();
  try {
    for (let attempt = 1; ; attempt++) {
      // Each query is a transaction of its own: append() checks the version
      // against the latest committed state, whatever the caller read before.
      const { rows } = await client.query(
        'SELECT version, type FROM event_log.replay($1, $2)', [STREAM, CART]);
      const loadedVersion = rows.length ? rows[rows.length - 1].version : 0; // bigint: a string
      if (rows.some((e) => e.type === 'CheckedOut')) throw new Error(`${CART} is checked out`);
      try {
        const res = await client.query(
          'SELECT * FROM event_log.append($1, $2, $3, $4, expected_version => $5)',
          [STREAM, CART, 'ItemAdded', item, loadedVersion]);
        console.log(`${CART}: appended version ${res.rows[0].version}`);
        return;
      } catch (e) {
        if (e.code !== 'EL001' || attempt === 5) throw e;
        console.log(`${CART}: version conflict, retrying (${e.detail})`);
      }
    }
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exitCode = 1;
});
