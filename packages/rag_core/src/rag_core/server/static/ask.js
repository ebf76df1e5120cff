// Ask a question: the answer streams in with its numbered passages; [n] shows passage n.

import { streamChat } from "./api.js";
import { el } from "./dom.js";

const CITATION = /\[(\d+(?:\s*,\s*\d+)*)\]/g;

export class AskView {
  constructor({ form, input, button, section, answer, error, passagesSection, passages }) {
    Object.assign(this, { form, input, button, section, answer, error, passagesSection,
                          passages });
    this.listeners = [];
    this.current = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.ask(input.value.trim());
    });
  }

  // fn({question, answer, passages, citations, model}) after each finished answer.
  onAnswer(fn) {
    this.listeners.push(fn);
  }

  async ask(question) {
    if (!question) return;
    this.button.disabled = true;
    this.section.hidden = false;
    this.error.hidden = true;
    this.passagesSection.hidden = true;
    this.passages.replaceChildren();
    const result = { question, answer: "", passages: [], citations: [], model: null };
    this.current = result;
    this.renderAnswer(result);
    try {
      await streamChat({ messages: [{ role: "user", content: question }] }, (chunk) => {
        result.model = chunk.model;
        if (chunk.sources) {
          result.passages = chunk.sources;
          this.renderPassages(result.passages);
        }
        const choice = chunk.choices?.[0];
        if (choice?.delta?.content) {
          result.answer += choice.delta.content;
          this.renderAnswer(result);
        }
        if (chunk.citations) {
          result.citations = chunk.citations;
          this.markCited(result.citations);
        }
      });
      this.listeners.forEach((fn) => fn(result));
    } catch (err) {
      this.error.textContent = err.message;
      this.error.hidden = false;
    } finally {
      this.button.disabled = false;
    }
  }

  // The answer as text nodes, with each valid [n] as a button that shows passage n.
  renderAnswer(result) {
    const parts = [];
    let last = 0;
    for (const match of result.answer.matchAll(CITATION)) {
      parts.push(result.answer.slice(last, match.index));
      const numbers = match[1].split(",").map((n) => Number(n.trim()));
      for (const n of numbers) {
        if (n >= 1 && n <= result.passages.length) {
          parts.push(el("button", { type: "button", className: "cite", textContent: `[${n}]`,
                                    onclick: () => this.showPassage(n) }));
        } else {
          parts.push(`[${n}]`);
        }
      }
      last = match.index + match[0].length;
    }
    parts.push(result.answer.slice(last));
    this.answer.replaceChildren(...parts);
  }

  renderPassages(passages) {
    this.passagesSection.hidden = passages.length === 0;
    this.passages.replaceChildren(...passages.map((p) => {
      const [start, end] = p.lines;
      const where = `${p.source}:${start === end ? start : `${start}-${end}`}`;
      return el("li", { id: `passage-${p.number}` },
        el("div", { className: "where", textContent: `[${p.number}] ${where}` }),
        el("pre", { textContent: p.text }));
    }));
  }

  markCited(citations) {
    for (const c of citations) {
      document.getElementById(`passage-${c.number}`)?.classList.add("cited");
    }
  }

  showPassage(n) {
    for (const li of this.passages.children) li.classList.remove("shown");
    const li = document.getElementById(`passage-${n}`);
    if (!li) return;
    li.classList.add("shown");
    li.scrollIntoView({ behavior: "smooth", block: "center" });
  }
}
