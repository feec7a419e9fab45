/**
 * A text/event-stream parser (the WHATWG rules): feed it decoded text in chunks of any
 * size; it returns the events completed by that chunk and keeps a partial line or a
 * partial event buffered until its terminating blank line arrives.
 */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
  retry: number | null;
}

export class SseParser {
  private buffer = "";
  private pendingCR = false;
  private id: string | null = null;
  private event = "";
  private data: string[] = [];
  private hasData = false;
  private retry: number | null = null;

  feed(chunk: string): SseMessage[] {
    const out: SseMessage[] = [];
    let text = chunk;
    // A CR at the end of the previous chunk may be the first half of CRLF.
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (ch === "\r") {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === "\n") i++;
        } else {
          this.pendingCR = true;
        }
      }
      start = i + 1;
      const message = this.line(line);
      if (message) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") {
      if (!this.hasData) {
        this.event = "";
        return null;
      }
      const message: SseMessage = {
        id: this.id,
        event: this.event || "message",
        data: this.data.join("\n"),
        retry: this.retry,
      };
      this.event = "";
      this.data = [];
      this.hasData = false;
      this.retry = null;
      return message;
    }
    if (line.startsWith(":")) return null; // a comment (the server's ping)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "event":
        this.event = value;
        break;
      case "data":
        this.data.push(value);
        this.hasData = true;
        break;
      case "id":
        if (!value.includes("\0")) this.id = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
    return null;
  }
}
