// The official socket.io-client, driven line by line: each stdin line is a
// JSON command, each event the client sees is printed as one JSON line.
//   node client.cjs <url> [<options as JSON>]
// Commands: {"emit": name, "args": [...], "ack": true} | {"uri": url}
//           (where the next reconnect goes) | {"exit": true}
const { io } = require("socket.io-client");
const readline = require("readline");

const url = process.argv[2];
const options = JSON.parse(process.argv[3] || "{}");
const socket = io(url, options);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");

// Engine.IO: the transport it opened on, and the upgrade to WebSocket.
socket.io.on("open", () => {
  const engine = socket.io.engine;
  print({ open: engine.transport.name });
  engine.once("upgrade", (transport) => print({ upgrade: transport.name }));
});
socket.on("connect", () => {
  print({ connect: { id: socket.id, recovered: socket.recovered, transport: socket.io.engine.transport.name } });
});
socket.on("connect_error", (err) => print({ connect_error: err.message }));
socket.on("disconnect", (reason) => print({ disconnect: reason }));
socket.onAny((event, ...args) => print({ event, args }));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.exit) process.exit(0);
  if (command.uri) socket.io.uri = command.uri;
  if (command.emit) {
    const args = command.args || [];
    if (command.ack) {
      socket.emit(command.emit, ...args, (reply) => print({ ack: command.emit, reply }));
    } else {
      socket.emit(command.emit, ...args);
    }
  }
});
