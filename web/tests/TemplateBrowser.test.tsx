import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import { TemplateBrowser, type TemplateInfo, type TemplateList } from "@/components/TemplateBrowser";

function item(name: string, kind: TemplateInfo["kind"], runnable: boolean | null, missing: string | null = null): TemplateInfo {
  return {
    name,
    title: `Title of ${name}`,
    description: "",
    source: name.startsWith("official:") ? "official" : "studio",
    kind,
    family: "flux",
    runnable,
    missing,
    missing_models: {},
    missing_nodes: [],
    needs_comfyui: null,
  };
}

const LIST: TemplateList = {
  comfyui: "connected",
  comfyui_detail: null,
  comfyui_version: "0.3.64",
  library_version: "0.1.123",
  items: [
    item("txt2img", "image", false, "any checkpoint in models/checkpoints"),
    item("official:flux_dev", "image", true),
    item("official:wan_t2v", "video", false, "wan2.2_vae.safetensors in ComfyUI/models/vae"),
  ],
};

describe("TemplateBrowser", () => {
  it("lists every template with what it lacks, filters by kind and runnable, and chooses one", async () => {
    const onChoose = vi.fn();
    render(<TemplateBrowser value={null} onChoose={onChoose} load={() => Promise.resolve(LIST)} />);
    await waitFor(() => expect(screen.getByTestId("template-official:flux_dev")).toBeTruthy());
    expect(screen.getByText("Needs wan2.2_vae.safetensors in ComfyUI/models/vae")).toBeTruthy();
    expect(screen.getByText(/Pixel chooses from what your ComfyUI has/)).toBeTruthy();

    fireEvent.change(screen.getByLabelText("Template"), { target: { value: "video" } });
    expect(screen.queryByTestId("template-official:flux_dev")).toBeNull();
    expect(screen.getByTestId("template-official:wan_t2v")).toBeTruthy();

    fireEvent.change(screen.getByLabelText("Template"), { target: { value: "all" } });
    fireEvent.click(screen.getByLabelText("Only those that run"));
    expect(screen.queryByTestId("template-txt2img")).toBeNull();
    expect(screen.queryByTestId("template-official:wan_t2v")).toBeNull();

    fireEvent.click(screen.getByRole("button", { name: "Use" }));
    expect(onChoose).toHaveBeenCalledWith("official:flux_dev");
  });

  it("shows the chosen template, lets Pixel choose again, and says when ComfyUI is down", async () => {
    const onChoose = vi.fn();
    const down: TemplateList = {
      ...LIST,
      comfyui: "unreachable",
      comfyui_detail: "ComfyUI at http://127.0.0.1:8188 is not running.",
      items: LIST.items.map((i) => ({ ...i, runnable: null, missing: null })),
    };
    render(<TemplateBrowser value="official:flux_dev" onChoose={onChoose} load={() => Promise.resolve(down)} />);
    await waitFor(() => expect(screen.getByRole("status").textContent).toMatch(/not connected/));
    expect(screen.getAllByText("unknown")).toHaveLength(3);
    expect(screen.getByRole("button", { name: "Chosen" })).toHaveProperty("disabled", true);
    fireEvent.click(screen.getByRole("button", { name: "Let Pixel choose" }));
    expect(onChoose).toHaveBeenCalledWith(null);
  });

  it("tells when the list cannot be loaded", async () => {
    render(<TemplateBrowser value={null} onChoose={() => undefined} load={() => Promise.reject(new Error("boom"))} />);
    await waitFor(() => expect(screen.getByRole("alert").textContent).toMatch(/Could not list the templates/));
  });
});
