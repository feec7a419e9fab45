/** Shapes of the studio API (see api/schemas.py and graph/events.py). */

export type Role = "user" | "style" | "composition" | "story" | "technical" | "critic" | "system";
export type SpecialistRole = "style" | "composition" | "story" | "technical" | "critic";

export const PHASES = [
  "ideation",
  "refinement",
  "synthesis",
  "review",
  "generating",
  "complete",
] as const;
export type Phase = (typeof PHASES)[number];

export interface Session {
  id: string;
  name: string;
  model_assignments: Record<string, string>;
  preferences: Partial<Preferences>;
  created_at: string;
  updated_at: string;
}

export interface Page<T> {
  items: T[];
  limit: number;
  offset: number;
}

export interface Preferences {
  approve_plans: boolean;
  max_rounds: number;
  default_size: "square" | "landscape" | "portrait";
  quality: "draft" | "standard" | "high";
  pause_after_idle_seconds: number | null;
  model_timeout: number;
  role_timeouts: Record<string, number>;
  ollama_keep_alive: string;
  ollama_num_ctx: number;
  unload_ollama_before_generation: boolean;
  /** "official:<name>" (GET /api/templates) or "custom:<name>"; null: Pixel chooses. */
  preferred_template?: string | null;
}

export interface SessionSettings {
  model_assignments: Record<string, string>;
  resolved_models: Record<string, string>;
  preferences: Preferences;
  notes: string[];
}

export interface Conversation {
  id: string;
  session_id: string;
  title: string | null;
  parent_id: string | null;
  forked_from_checkpoint: string | null;
  status: string;
  created_at: string;
  updated_at: string;
}

export interface Plan {
  template?: string;
  checkpoint?: string;
  sampler?: string;
  scheduler?: string;
  steps?: number;
  cfg?: number;
  width?: number;
  height?: number;
  seed?: number;
  batch_size?: number;
  positive_prompt?: string;
  negative_prompt?: string;
  denoise?: number;
  rationale?: string;
  [key: string]: unknown;
}

export interface GenerationOutput {
  filename: string;
  kind?: "image" | "video" | string;
  url?: string;
  content_type?: string;
  [key: string]: unknown;
}

/** The generation record kept in the graph state (GenerationRecord). */
export interface GenerationRecordState {
  status: string;
  progress?: number;
  generation_id?: string | null;
  outputs?: GenerationOutput[];
  error?: string | null;
  plan?: Plan | null;
  waiting_for_server?: boolean;
}

export interface NoConsensusQuestion {
  type: "no_consensus";
  question: string;
  options: { role: string; speaker: string; option: string }[];
  id?: string;
}

export interface ApprovePlanQuestion {
  type: "approve_plan";
  question?: string;
  plan: Plan | null;
  id?: string;
}

export type Question =
  | NoConsensusQuestion
  | ApprovePlanQuestion
  | { type: string; question?: string; [key: string]: unknown };

export interface ConversationDetail extends Conversation {
  phase: Phase | null;
  running: boolean;
  question: Question | null;
  plan: Plan | null;
  generation: GenerationRecordState | null;
  brief: Record<string, unknown> | null;
  last_event_id: number;
}

export interface MessagePayload {
  message_id: string;
  role: Role;
  speaker: string;
  content: string;
  phase: string | null;
  kind: string | null;
  interrupted: boolean;
  metadata: Record<string, unknown>;
}

export interface StoredMessage extends MessagePayload {
  id: string;
  seq: number;
  created_at: string;
}

export interface Generation {
  id: string;
  session_id: string;
  conversation_id: string | null;
  status: string;
  progress: number;
  prompt_id: string | null;
  template: string | null;
  parameters: Record<string, unknown>;
  outputs: GenerationOutput[];
  error: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export interface InstalledModel {
  assignment: string;
  name: string;
  parameter_size: string | null;
  quantization: string | null;
  size: number | null;
}

export interface ModelsInfo {
  ollama_host: string;
  ollama_reachable: boolean;
  ollama_error: string | null;
  installed: InstalledModel[];
  embedded_available: boolean;
  embedded_note: string;
  auto: string;
}

export interface PullProgress {
  status: string;
  completed?: number | null;
  total?: number | null;
  fraction?: number | null;
  error?: string;
}

export interface ComponentHealth {
  ok: boolean;
  detail: string | null;
}

export interface Health {
  database: ComponentHealth;
  ollama: ComponentHealth;
  comfyui: ComponentHealth;
}

// ------------------------------------------------------------------ events

export type EventKind =
  | "token"
  | "message"
  | "phase"
  | "typing"
  | "interrupt"
  | "generation_progress"
  | "generation_done"
  | "error"
  | "status";

export interface StudioEvent {
  id: number;
  kind: EventKind | string;
  data: Record<string, unknown>;
}
