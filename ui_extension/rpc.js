// JSON-RPC 2.0 over the middleware websocket (/api/current), as midclt and the TrueNAS web UI
// speak it. Job methods answer with a job id; jobs are followed with core.get_jobs.

export class RpcError extends Error {
  constructor(error) {
    const data = error.data || {};
    super(data.reason || error.message || "call failed");
    this.code = error.code;
    this.errno = data.error;
    // ValidationErrors arrive as [[attribute, message, errno], ...] in data.extra; one with no
    // attribute (middlewared's "does not exist": [[null, message, ENOENT]]) is about the whole call.
    const errors = Array.isArray(data.extra) ? data.extra.filter((e) => Array.isArray(e) && e.length >= 2) : [];
    this.fieldErrors = errors.filter(([field]) => field).map(([field, message]) => ({ field, message }));
    const general = errors.filter(([field]) => !field).map(([, message]) => message);
    if (general.length) this.message = general.join("; ");
  }
}

export class Rpc {
  constructor(url) {
    this.url = url;
    this.nextId = 1;
    this.pending = new Map();
    this.onclose = () => {};
  }

  connect() {
    return new Promise((resolve, reject) => {
      this.socket = new WebSocket(this.url);
      this.socket.addEventListener("open", () => resolve(this));
      this.socket.addEventListener("error", () => reject(new Error(`cannot connect to ${this.url}`)));
      this.socket.addEventListener("close", () => {
        for (const { reject: fail } of this.pending.values()) fail(new Error("connection closed"));
        this.pending.clear();
        this.onclose();
      });
      this.socket.addEventListener("message", (event) => this.receive(JSON.parse(event.data)));
    });
  }

  receive(message) {
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (message.error) waiter.reject(new RpcError(message.error));
    else waiter.resolve(message.result);
  }

  call(method, params = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  // Start a job method and report its progress until it ends; resolves with its result.
  async job(method, params, onProgress, interval = 250) {
    const jobId = await this.call(method, params);
    for (;;) {
      const [job] = await this.call("core.get_jobs", [[["id", "=", jobId]]]);
      if (job) {
        onProgress(job);
        if (job.state === "SUCCESS") return job.result;
        if (job.state === "FAILED" || job.state === "ABORTED") throw jobError(job);
      }
      await new Promise((r) => setTimeout(r, interval));
    }
  }
}

// A failed job as the error of a call: a job's ValidationErrors come in its exc_info
// ({type: "VALIDATION", extra: [[attribute, message, errno], ...]}, middlewared's job.py), so
// they can be shown on the fields they name like those of a plain call.
function jobError(job) {
  const info = job.exc_info || {};
  const extra = info.type === "VALIDATION" ? info.extra : null;
  return new RpcError({ message: job.error || job.state, data: { reason: job.error || job.state, error: info.errno, extra } });
}
