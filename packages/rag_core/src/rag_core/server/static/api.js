// Talking to the server: the token, JSON requests and the streamed chat answer.

const TOKEN_KEY = "mlx-rag-token";

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.param = error?.param ?? null;
  }
}

// A token given as /#token=... is kept for this tab and removed from the address bar.
export function takeTokenFromUrl() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    setToken(decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function send(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    throw new ApiError(response.status, data.error);
  }
  return response;
}

// JSON in, JSON out; an error response becomes an ApiError with the server's message.
export async function api(path, options = {}) {
  return (await send(path, options)).json();
}

// A binary resource (audio, images) as an object URL: <audio> cannot send the token itself.
export async function blobUrl(path) {
  return URL.createObjectURL(await (await send(path)).blob());
}

// POST /v1/chat/completions with stream: true; calls onChunk(chunk) for each event.
export async function streamChat(body, onChunk) {
  const response = await send("/v1/chat/completions", { method: "POST",
                                                         body: { ...body, stream: true } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error);
      onChunk(chunk);
    }
  }
}
