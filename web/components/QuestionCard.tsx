"use client";
import { useState } from "react";
import type { ApprovePlanQuestion, NoConsensusQuestion, Question } from "@/lib/types";
import { PlanTable } from "./PlanTable";
import { SpecialistAvatar } from "./SpecialistAvatar";

export interface QuestionCardProps {
  question: Question;
  onAnswer: (answer: { text?: string; choice?: string; approved?: boolean }) => Promise<void> | void;
}

/** The team's question for the person (an interrupt), answerable right here. */
export function QuestionCard({ question, onAnswer }: QuestionCardProps) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const answer = async (value: { text?: string; choice?: string; approved?: boolean }) => {
    setBusy(true);
    try {
      await onAnswer(value);
    } finally {
      setBusy(false);
    }
  };

  if (question.type === "approve_plan") {
    const q = question as ApprovePlanQuestion;
    return (
      <section className="question" aria-labelledby="question-title" data-testid="question">
        <h2 id="question-title">{q.question || "Generate this plan?"}</h2>
        {q.plan && <PlanTable plan={q.plan} />}
        <div className="field">
          <label htmlFor="question-feedback">What should change? (optional)</label>
          <input
            id="question-feedback"
            type="text"
            value={text}
            onChange={(event) => setText(event.target.value)}
            placeholder="e.g. make it a portrait format"
          />
        </div>
        <div className="row" style={{ marginTop: 10 }}>
          <button
            type="button"
            className="btn btn-primary"
            disabled={busy}
            onClick={() => answer({ approved: true, ...(text.trim() ? { text: text.trim() } : {}) })}
          >
            Approve and generate
          </button>
          <button
            type="button"
            className="btn"
            disabled={busy}
            onClick={() => answer({ approved: false, ...(text.trim() ? { text: text.trim() } : {}) })}
          >
            Not yet — rework it
          </button>
        </div>
      </section>
    );
  }

  const q = question as NoConsensusQuestion;
  const options = Array.isArray(q.options) ? q.options : [];
  return (
    <section className="question" aria-labelledby="question-title" data-testid="question">
      <h2 id="question-title">The team asks you to decide</h2>
      <p style={{ whiteSpace: "pre-wrap" }}>{q.question}</p>
      {options.length > 0 && (
        <div className="options" role="group" aria-label="Options">
          {options.map((option) => (
            <button
              key={`${option.role}-${option.option}`}
              type="button"
              className="btn option-btn"
              disabled={busy}
              onClick={() => answer({ choice: `${option.speaker}: ${option.option}` })}
            >
              <SpecialistAvatar role={option.role} speaker={option.speaker} size={24} />
              <span>
                <strong>{option.speaker}</strong> — {option.option}
              </span>
            </button>
          ))}
        </div>
      )}
      <form
        className="row"
        onSubmit={(event) => {
          event.preventDefault();
          if (text.trim()) void answer({ text: text.trim() });
        }}
      >
        <label htmlFor="question-answer" className="visually-hidden">
          Your answer
        </label>
        <input
          id="question-answer"
          type="text"
          style={{ flex: 1, minWidth: 180 }}
          value={text}
          onChange={(event) => setText(event.target.value)}
          placeholder="Or say in your own words…"
        />
        <button type="submit" className="btn btn-primary" disabled={busy || !text.trim()}>
          Answer
        </button>
      </form>
    </section>
  );
}
