import { render, screen, waitFor } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";

import { TeamModels } from "@/components/TeamModels";
import { api } from "@/lib/api";

describe("TeamModels", () => {
  afterEach(() => vi.restoreAllMocks());

  it("names each specialist's model and what would make the team better", async () => {
    vi.spyOn(api, "getSettings").mockResolvedValue({
      model_assignments: {},
      resolved_models: {
        style: "embedded",
        composition: "embedded",
        story: "ollama:llama3.1:8b",
        technical: "embedded",
        critic: "embedded",
      },
      preferences: {} as never,
      notes: ["Some roles use the embedded model: install Ollama for better results."],
    });
    render(<TeamModels sessionId="s1" settingsHref="/settings?session=s1" />);
    await waitFor(() => expect(screen.getByTestId("team-models")).toBeTruthy());
    expect(screen.getByTitle("Saga runs ollama:llama3.1:8b")).toBeTruthy();
    expect(screen.getByText(/install Ollama for better results/)).toBeTruthy();
    expect(screen.getByRole("link", { name: "Change models" }).getAttribute("href")).toBe(
      "/settings?session=s1",
    );
  });

  it("shows nothing without a session", () => {
    const spy = vi.spyOn(api, "getSettings");
    const { container } = render(<TeamModels sessionId={null} settingsHref="/settings" />);
    expect(container.textContent).toBe("");
    expect(spy).not.toHaveBeenCalled();
  });
});
