/**
 * A parser of the text/event-stream format (the WHATWG rules the daemon's feed needs):
 * `id:`, `event:`, `data:` lines, comments, an event dispatched at a blank line; CR, LF
 * and CRLF line ends; a chunk may end anywhere. No I/O here: bytes in, events out.
 */

export interface RawEvent {
  /** the event's `id:` field; "" when it had none (a `cutoff`) */
  id: string;
  type: string;
  data: string;
}

export class SseParser {
  private buffer = "";
  private id = "";
  private type = "";
  private data: string[] = [];
  private sawId = false;
  private lastWasCR = false;

  /** The events completed by `chunk`. */
  feed(chunk: string): RawEvent[] {
    if (this.lastWasCR && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.lastWasCR = chunk.endsWith("\r");
    this.buffer += chunk;
    const out: RawEvent[] = [];
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() ?? "";
    for (const line of lines) {
      const event = this.line(line);
      if (event) out.push(event);
    }
    return out;
  }

  private line(line: string): RawEvent | undefined {
    if (line === "") {
      if (this.data.length === 0 && !this.type) {
        this.sawId = false;
        return undefined;
      }
      const event = { id: this.sawId ? this.id : "", type: this.type || "message",
                      data: this.data.join("\n") };
      this.type = "";
      this.data = [];
      this.sawId = false;
      return event;
    }
    if (line.startsWith(":")) return undefined; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "id" && !value.includes("\0")) {
      this.id = value;
      this.sawId = true;
    } else if (name === "event") {
      this.type = value;
    } else if (name === "data") {
      this.data.push(value);
    }
    return undefined;
  }
}
