// Many official socket.io-client sockets in one process, for tests that
// need hundreds of them: each joins one room and keeps what it sees.
//   node swarm.cjs <url> <count> <room>
// Prints {"ready": n} once every socket joined; on a stdin line
// "until <id>", {"reached": id} once every socket has a message with that
// id or a later one ("until <id> <ms>": {"behind": ...} after <ms>, 25 s
// by default); on a stdin line "report",
// prints every socket's history as one JSON line and exits:
//   {"clients": [{"ids": [...], "connects": n, "recovered_false": n,
//                 "closes": [unix ms, ...], "reasons": [...],
//                 "reconnects": [ms from a close to connected, ...]}],
//    "sent": [...], "acked": [...]}
// On a stdin line "publish <rate>", one more socket posts numbered
// messages to the room at that rate (with an ack callback) until the
// report or a line "quiet": "sent" holds their numbers, "acked" the ids
// acknowledged.
// Half the sockets start on WebSocket, half on long-polling (upgrading);
// SWARM_TRANSPORTS=websocket puts all on WebSocket (for a server without
// shared sessions, behind a balancer without affinity). SWARM_KEY=message
// keeps each message's text instead of its id (for a server whose messages
// have none: the publisher's numbers). SWARM_ACKS=none: the server answers
// no ack callback, so a join counts once emitted. SWARM_CHURN=<ms>: each
// socket drops its connection every <ms> to 3 <ms> (it reconnects and
// recovers, through the balancer) until "quiet". SWARM_KEYED=1: the
// publisher gives each post an idempotency key and retries it (after a
// refusal, or no answer in 3 s) until acknowledged; "pairs" in the report
// holds [key, id, tries] of each; a line "idle" is answered {"idle": true}
// once no post is in flight.
const { io } = require("socket.io-client");
const readline = require("readline");

const [url, count, room] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const only = process.env.SWARM_TRANSPORTS;
const key = process.env.SWARM_KEY || "id";
const acks = process.env.SWARM_ACKS !== "none";
const churn = Number(process.env.SWARM_CHURN || 0);
const keyed = process.env.SWARM_KEYED === "1";
const pairs = [];
let quiet = false;
const clients = [];
const sent = [];
const acked = [];
let posting;
const sockets = [];
let joined = 0;

for (let i = 0; i < count; i++) {
  const transports = only ? only.split(",") : i % 2 ? ["websocket"] : ["polling", "websocket"];
  const socket = io(url, { transports, reconnectionDelay: 200, reconnectionDelayMax: 2000 });
  const client = { ids: [], connects: 0, recovered_false: 0, closes: [], reasons: [], reconnects: [] };
  clients.push(client);
  sockets.push(socket);
  let first = true;
  // A join refused (unavailable: Redis away) or not answered (the
  // connection dropped first; a recovered session has only the rooms
  // joined before the drop) is tried again, as the README asks of a
  // client; while disconnected the client buffers it.
  const join = (done) =>
    socket.timeout(3000).emit("join_room", room, (err, answer) => {
      if (err || (answer && answer.error)) setTimeout(() => join(done), 200);
      else done();
    });
  socket.on("connect", () => {
    client.connects++;
    if (client.closes.length) client.reconnects.push(Date.now() - client.closes[client.closes.length - 1]);
    if (first) {
      first = false;
      const done = () => {
        joined++;
        if (joined === count) print({ ready: joined });
      };
      if (acks) join(done);
      else socket.emit("join_room", room), done();
    } else if (!socket.recovered) {
      client.recovered_false++;
      if (acks) join(() => {});
      else socket.emit("join_room", room);
    }
  });
  if (churn) {
    const drop = () => {
      if (quiet) return;
      if (socket.io.engine) socket.io.engine.close();
      setTimeout(drop, churn * (1 + 2 * Math.random()));
    };
    setTimeout(drop, churn * (1 + 2 * Math.random()));
  }
  socket.on("disconnect", (reason) => {
    client.closes.push(Date.now());
    client.reasons.push(reason);
  });
  socket.on("message", (data) => client.ids.push(data[key]));
}

const reached = (target) =>
  clients.every((c) => c.ids.length && BigInt(c.ids[c.ids.length - 1]) >= target);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg, rest] = line.trim().split(" ");
  if (command === "until") {
    const target = BigInt(arg);
    const started = Date.now();
    const check = setInterval(() => {
      if (reached(target)) {
        clearInterval(check);
        print({ reached: arg });
      } else if (Date.now() - started > (Number(rest) || 25000)) {
        // Tells the test who is behind, and how it got there.
        clearInterval(check);
        const behind = clients
          .map((c, i) => ({ i, sid: sockets[i].io.engine && sockets[i].io.engine.id, last: c.ids[c.ids.length - 1], connected: sockets[i].connected,
                            connects: c.connects, reasons: c.reasons, transport: sockets[i].io.engine && sockets[i].io.engine.transport && sockets[i].io.engine.transport.name }))
          .filter((c) => !c.last || BigInt(c.last) < target);
        print({ behind });
      }
    }, 20);
  }
  if (command === "publish") {
    const publisher = io(url, { transports: only ? only.split(",") : ["websocket"] });
    let n = 1000000;
    if (keyed) {
      let busy = false;
      const post = (key, tries) => {
        let answered = false;
        const again = () => !answered && ((answered = true), setTimeout(() => post(key, tries + 1), 200));
        const timer = setTimeout(again, 3000);
        publisher.emit("message", { room, message: key, idempotency_key: key }, (answer) => {
          clearTimeout(timer);
          if (answered) return;
          if (answer && answer.id) {
            answered = true;
            pairs.push([key, answer.id, tries]);
            busy = false;
          } else again();
        });
      };
      posting = setInterval(() => {
        if (busy) return;
        busy = true;
        const key = `${room}-sio-${++n}`;
        sent.push(key);
        post(key, 1);
      }, 1000 / Number(arg));
      return;
    }
    posting = setInterval(() => {
      const text = String(++n);
      sent.push(text);
      publisher.emit("message", { room, message: text }, (answer) => answer && answer.id && acked.push(answer.id));
    }, 1000 / Number(arg));
  }
  if (command === "quiet") {
    clearInterval(posting);
    quiet = true;
  }
  if (command === "idle") {
    const check = setInterval(() => {
      if (sent.length === pairs.length) {
        clearInterval(check);
        print({ idle: true });
      }
    }, 20);
  }
  if (command === "report") {
    // Exits once the line is out: a pipe takes a long line in parts.
    // Every socket says goodbye (a DISCONNECT the server acts on at once,
    // where a vanished long-polling client is only noticed by its ping
    // timeout), then the process exits once the line is out.
    const line = JSON.stringify({ clients, sent, acked, pairs }) + "\n";
    sockets.forEach((socket) => socket.disconnect());
    process.stdout.write(line, () => setTimeout(() => process.exit(0), 300));
  }
});
