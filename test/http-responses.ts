// Splits HTTP/1.1 responses framed by Content-Length off the front of what a
// raw socket received, for tests that drive http.wasm by hand.
export interface HttpResponse<B extends string | Buffer> { status: number; headers: Map<string, string>; body: B }

/** Takes every complete response off the front of `state.buf` (text or bytes), leaving the rest there. */
export function takeResponses<B extends string | Buffer>(state: { buf: B }): HttpResponse<B>[] {
  const out: HttpResponse<B>[] = [];
  for (;;) {
    const buf = state.buf;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return out;
    const head = typeof buf === 'string' ? buf.slice(0, end) : buf.subarray(0, end).toString('latin1');
    const lines = head.split('\r\n');
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1]);
    const headers = new Map(lines.slice(1).map((l) => {
      const i = l.indexOf(':');
      return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string];
    }));
    const length = Number(headers.get('content-length'));
    if (!Number.isInteger(length)) throw new Error(`response without Content-Length: ${JSON.stringify(lines[0])}`);
    if (buf.length < end + 4 + length) return out;
    const body = typeof buf === 'string' ? buf.slice(end + 4, end + 4 + length) : Buffer.from(buf.subarray(end + 4, end + 4 + length));
    out.push({ status, headers, body: body as B });
    state.buf = (typeof buf === 'string' ? buf.slice(end + 4 + length) : buf.subarray(end + 4 + length)) as B;
  }
}
