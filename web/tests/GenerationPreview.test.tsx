import { fireEvent, render, screen } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { GenerationPreview } from "@/components/GenerationPreview";
import type { GenerationView } from "@/lib/conversation";

const view = (over: Partial<GenerationView>): GenerationView => ({
  generationId: "g1",
  status: "running",
  progress: 0.4,
  step: 10,
  maxSteps: 25,
  node: "3",
  nodeType: "KSampler",
  preview: null,
  outputs: [],
  error: null,
  message: null,
  connection: null,
  plan: { positive_prompt: "neon street", width: 1216, height: 832, seed: 7 },
  ...over,
});

describe("GenerationPreview", () => {
  it("shows progress with its value and can cancel", () => {
    const onCancel = vi.fn();
    render(<GenerationPreview generation={view({})} onCancel={onCancel} />);
    const bar = screen.getByRole("progressbar");
    expect(bar.getAttribute("aria-valuenow")).toBe("40");
    expect(screen.getByText(/step 10\/25/)).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    expect(onCancel).toHaveBeenCalled();
  });

  it("shows the image when done, with the iteration controls", () => {
    const onRegenerate = vi.fn();
    const onVariation = vi.fn();
    const onUseAsInit = vi.fn();
    render(
      <GenerationPreview
        generation={view({
          status: "complete",
          progress: 1,
          outputs: [{ filename: "a.png", kind: "image", url: "/api/generations/g1/outputs/a.png" }],
        })}
        onRegenerate={onRegenerate}
        onVariation={onVariation}
        onUseAsInit={onUseAsInit}
      />,
    );
    expect(screen.queryByRole("progressbar")).toBeNull();
    const image = screen.getByRole("img", { name: "Generated: neon street" }) as HTMLImageElement;
    expect(image.getAttribute("src")).toBe("/api/generations/g1/outputs/a.png");
    fireEvent.click(screen.getByRole("button", { name: /Regenerate/ }));
    fireEvent.click(screen.getByRole("button", { name: /Variation/ }));
    fireEvent.click(screen.getByRole("button", { name: /Use as init image/ }));
    expect(onRegenerate).toHaveBeenCalled();
    expect(onVariation).toHaveBeenCalled();
    expect(onUseAsInit).toHaveBeenCalledWith(
      "/api/generations/g1/outputs/a.png",
      expect.objectContaining({ filename: "a.png" }),
    );
    const download = screen.getByRole("link", { name: /Download/ });
    expect(download.getAttribute("download")).toBe("a.png");
  });

  it("says clearly when it failed", () => {
    render(<GenerationPreview generation={view({ status: "failed", error: "out of memory" })} onRegenerate={() => undefined} />);
    expect(screen.getByRole("alert").textContent).toContain("out of memory");
    expect(screen.getByRole("button", { name: /Regenerate/ })).toBeTruthy();
  });
});
