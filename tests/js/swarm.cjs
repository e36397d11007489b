// Many official socket.io-client sockets in one process, for tests that
// need hundreds of them: each joins one room and keeps what it sees.
//   node swarm.cjs <url> <count> <room>
// Prints {"ready": n} once every socket joined; on a stdin line
// "until <id>", {"reached": id} once every socket has a message with that
// id or a later one; on a stdin line "report",
// prints every socket's history as one JSON line and exits:
//   {"clients": [{"ids": [...], "connects": n, "recovered_false": n,
//                 "closes": [unix ms, ...], "reasons": [...]}]}
// Half the sockets start on WebSocket, half on long-polling (upgrading).
const { io } = require("socket.io-client");
const readline = require("readline");

const [url, count, room] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const clients = [];
const sockets = [];
let joined = 0;

for (let i = 0; i < count; i++) {
  const transports = i % 2 ? ["websocket"] : ["polling", "websocket"];
  const socket = io(url, { transports, reconnectionDelay: 200, reconnectionDelayMax: 2000 });
  const client = { ids: [], connects: 0, recovered_false: 0, closes: [], reasons: [] };
  clients.push(client);
  sockets.push(socket);
  let first = true;
  socket.on("connect", () => {
    client.connects++;
    if (first) {
      first = false;
      socket.emit("join_room", room, () => {
        joined++;
        if (joined === count) print({ ready: joined });
      });
    } else if (!socket.recovered) {
      client.recovered_false++;
      socket.emit("join_room", room, () => {});
    }
  });
  socket.on("disconnect", (reason) => {
    client.closes.push(Date.now());
    client.reasons.push(reason);
  });
  socket.on("message", (data) => client.ids.push(data.id));
}

const reached = (target) =>
  clients.every((c) => c.ids.length && BigInt(c.ids[c.ids.length - 1]) >= target);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(" ");
  if (command === "until") {
    const target = BigInt(arg);
    const started = Date.now();
    const check = setInterval(() => {
      if (reached(target)) {
        clearInterval(check);
        print({ reached: arg });
      } else if (Date.now() - started > 25000) {
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
  if (command === "report") {
    // Exits once the line is out: a pipe takes a long line in parts.
    process.stdout.write(JSON.stringify({ clients }) + "\n", () => process.exit(0));
  }
});
