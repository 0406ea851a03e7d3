/**
 * STAND-IN for an endpoint that swallows packets, for the doctor's deadline
 * tests: a listener (TCP on 127.0.0.1, or a unix socket) that accepts every
 * connection and never answers a byte. Over TCP this is "connects, then
 * nothing": an HTTP server that never responds, a TLS handshake that never
 * completes, a gRPC or D-Bus peer that never speaks. (A port whose SYNs are
 * dropped cannot be made without root and a firewall rule; the doctor's
 * connect-timeout finding is tested through its pure classifier.)
 */
import net from "node:net";

export interface BlackHole {
  /** `127.0.0.1:<port>` for TCP, the socket path for unix. */
  address: string;
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

export async function startBlackHole(opts: { unixPath?: string } = {}): Promise<BlackHole> {
  const sockets = new Set<net.Socket>();
  let count = 0;
  const server = net.createServer((s) => {
    count++;
    sockets.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sockets.delete(s));
    s.resume(); // read and drop whatever the client sends
  });
  await new Promise<void>((resolve) => (opts.unixPath ? server.listen(opts.unixPath, resolve) : server.listen(0, "127.0.0.1", resolve)));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    address: opts.unixPath ?? `127.0.0.1:${port}`,
    port,
    accepted: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
