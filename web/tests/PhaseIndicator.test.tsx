import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { PhaseIndicator } from "@/components/PhaseIndicator";

describe("PhaseIndicator", () => {
  it("shows that a generation waits for ComfyUI instead of a finished conversation", () => {
    render(<PhaseIndicator phase="generating" waiting />);
    const current = screen.getByRole("listitem", { current: "step" });
    expect(current.textContent).toBe("waiting for ComfyUI");
    expect(screen.getByText("complete").getAttribute("data-state")).toBe("todo");
  });

  it("names the generating phase plainly while ComfyUI works", () => {
    render(<PhaseIndicator phase="generating" />);
    expect(screen.getByRole("listitem", { current: "step" }).textContent).toBe("generating");
  });
});
