import { describe, expect, it } from "vitest";
import { SseParser } from "@/lib/sse";

describe("SseParser", () => {
  it("parses complete events with id, event and JSON data", () => {
    const parser = new SseParser();
    const out = parser.feed('id: 7\nevent: token\ndata: {"text":"hi"}\n\n');
    expect(out).toEqual([{ id: "7", event: "token", data: '{"text":"hi"}', retry: null }]);
  });

  it("buffers a partial event until its blank line arrives, whatever the chunking", () => {
    const text = 'id: 1\r\nevent: message\r\ndata: {"content":"Luna speaks"}\r\n\r\nid: 2\r\nevent: phase\r\ndata: {"phase":"refinement"}\r\n\r\n';
    for (let size = 1; size <= text.length; size += 3) {
      const parser = new SseParser();
      const events = [];
      for (let i = 0; i < text.length; i += size) events.push(...parser.feed(text.slice(i, i + size)));
      expect(events.map((e) => e.id)).toEqual(["1", "2"]);
      expect(JSON.parse(events[0].data)).toEqual({ content: "Luna speaks" });
    }
  });

  it("keeps nothing from a half event: it is delivered only when complete", () => {
    const parser = new SseParser();
    expect(parser.feed("id: 3\nevent: token\ndata: {\"te")).toEqual([]);
    expect(parser.feed('xt":"wor"}\n')).toEqual([]);
    expect(parser.feed("\n")).toHaveLength(1);
  });

  it("ignores comments (pings) and joins multi-line data", () => {
    const parser = new SseParser();
    const out = parser.feed(": ping\n\ndata: a\ndata: b\nid: 9\n\n");
    expect(out).toEqual([{ id: "9", event: "message", data: "a\nb", retry: null }]);
  });

  it("handles a CRLF split across chunks", () => {
    const parser = new SseParser();
    expect(parser.feed("id: 4\r")).toEqual([]);
    expect(parser.feed("\ndata: x\r\n\r")).toHaveLength(1);
    expect(parser.feed("\nid: 5\ndata: y\n\n")).toHaveLength(1);
  });
});
