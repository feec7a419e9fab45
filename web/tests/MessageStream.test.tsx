import { fireEvent, render, screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { ChatInput } from "@/components/ChatInput";
import { MessageStream } from "@/components/MessageStream";
import { SpecialistAvatar } from "@/components/SpecialistAvatar";
import type { ChatMessage } from "@/lib/conversation";

const msg = (over: Partial<ChatMessage>): ChatMessage => ({
  key: over.messageId ?? "k",
  messageId: "m",
  role: "style",
  speaker: "Luna",
  content: "",
  phase: "ideation",
  kind: null,
  interrupted: false,
  streaming: false,
  pending: false,
  failed: null,
  metadata: {},
  ...over,
});

describe("MessageStream", () => {
  it("renders each specialist with name, title, avatar and colour", () => {
    render(
      <MessageStream
        typing={{}}
        messages={[
          msg({ messageId: "u", key: "u", role: "user", speaker: "You", content: "a neon street" }),
          msg({ messageId: "a", key: "a", role: "style", speaker: "Luna", content: "Magenta and teal." }),
          msg({ messageId: "b", key: "b", role: "composition", speaker: "Frame", content: "Low angle." }),
          msg({ messageId: "c", key: "c", role: "system", speaker: "Studio", content: "Let's refine." }),
        ]}
      />,
    );
    const log = screen.getByRole("log");
    const articles = within(log).getAllByRole("article");
    expect(articles.map((a) => a.getAttribute("data-role"))).toEqual(["user", "style", "composition", "system"]);
    const luna = screen.getByRole("article", { name: "Luna, style specialist" });
    expect(within(luna).getByText("Magenta and teal.")).toBeTruthy();
    expect(luna.getAttribute("style")).toContain("--c-magenta");
    const frame = screen.getByRole("article", { name: "Frame, composition specialist" });
    expect(frame.getAttribute("style")).toContain("--c-cyan");
    expect(screen.getByRole("article", { name: "You" })).toBeTruthy();
  });

  it("shows streaming text with a caret, and the typing indicator names who is composing", () => {
    const { container } = render(
      <MessageStream
        typing={{ composition: "Frame" }}
        messages={[msg({ messageId: "a", role: "composition", speaker: "Frame", content: "A low", streaming: true })]}
      />,
    );
    const article = screen.getByRole("article", { name: /Frame/ });
    expect(article.getAttribute("aria-busy")).toBe("true");
    expect(article.textContent).toContain("A low");
    expect(container.querySelector(".caret")).not.toBeNull();
    expect(screen.getByTestId("typing").textContent).toContain("Frame is writing…");
  });

  it("updates in place as tokens arrive (no duplicate bubbles)", () => {
    const base = msg({ messageId: "a", key: "a", content: "Deep", streaming: true });
    const { rerender } = render(<MessageStream typing={{}} messages={[base]} />);
    rerender(<MessageStream typing={{}} messages={[{ ...base, content: "Deep indigo" }]} />);
    rerender(<MessageStream typing={{}} messages={[{ ...base, content: "Deep indigo light.", streaming: false }]} />);
    const articles = screen.getAllByRole("article");
    expect(articles).toHaveLength(1);
    expect(articles[0].textContent).toContain("Deep indigo light.");
    expect(articles[0].getAttribute("aria-busy")).toBeNull();
  });

  it("marks interrupted, sending and failed messages; failed ones can be retried", () => {
    const onRetry = vi.fn();
    render(
      <MessageStream
        typing={{}}
        onRetry={onRetry}
        messages={[
          msg({ messageId: "a", key: "a", content: "I'd frame", interrupted: true }),
          msg({ messageId: null, key: "p", role: "user", speaker: "You", content: "wider", pending: true }),
          msg({ messageId: null, key: "f", role: "user", speaker: "You", content: "again", failed: "offline" }),
        ]}
      />,
    );
    expect(screen.getByText("interrupted")).toBeTruthy();
    expect(screen.getByText("Sending…")).toBeTruthy();
    expect(screen.getByRole("alert").textContent).toContain("offline");
    fireEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(onRetry).toHaveBeenCalledWith("f");
  });

  it("links a missing model to the settings of that role", () => {
    render(
      <MessageStream
        typing={{}}
        settingsHref={(role) => `/settings#role-${role}`}
        messages={[
          msg({
            role: "system",
            speaker: "Studio",
            kind: "unavailable",
            content: "Saga is unavailable: model llama3 is not installed",
            metadata: { unavailable_role: "story", model: "ollama:llama3" },
          }),
        ]}
      />,
    );
    const link = screen.getByRole("link", { name: "Change Saga's model in Settings" });
    expect(link.getAttribute("href")).toBe("/settings#role-story");
  });
});

describe("SpecialistAvatar", () => {
  it("is labelled when it stands alone", () => {
    render(<SpecialistAvatar role="critic" decorative={false} />);
    expect(screen.getByRole("img", { name: "Lens" }).textContent).toBe("L");
  });
});

describe("ChatInput", () => {
  it("sends on Enter, keeps Shift+Enter for new lines, and stays enabled while the team talks", () => {
    const onSend = vi.fn();
    render(<ChatInput onSend={onSend} teamBusy />);
    const box = screen.getByLabelText("Message to the team") as HTMLTextAreaElement;
    expect(box.disabled).toBe(false);
    expect(screen.getByRole("button", { name: "Interject" })).toBeTruthy();
    fireEvent.change(box, { target: { value: "brighter neon" } });
    fireEvent.keyDown(box, { key: "Enter", shiftKey: true });
    expect(onSend).not.toHaveBeenCalled();
    fireEvent.keyDown(box, { key: "Enter" });
    expect(onSend).toHaveBeenCalledWith("brighter neon", []);
    expect(box.value).toBe("");
  });

  it("does not send blank messages", () => {
    const onSend = vi.fn();
    render(<ChatInput onSend={onSend} />);
    fireEvent.change(screen.getByLabelText("Message to the team"), { target: { value: "   " } });
    fireEvent.click(screen.getByRole("button", { name: "Send" }));
    expect(onSend).not.toHaveBeenCalled();
  });
});
