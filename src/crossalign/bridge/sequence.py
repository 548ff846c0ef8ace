"""Chat-template sequences with a projected prefix, teacher-forced loss, and greedy decoding.

A prompt is rendered with the LM's own chat template around a marker in the user turn; the
marker's place is where the k prefix vectors go, so the prefix sits just before the prompt tokens
and the template (system turn, role tags, generation prompt) stays exactly as the LM knows it.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChatFormat", "build_batch", "prefix_loss", "answer_loss", "greedy_decode"]

_MARK = "<<<crossalign-prefix>>>"


class ChatFormat:
    """Token ids around the prefix for a question, and of an answer, under the LM's chat template."""

    def __init__(self, tokenizer: Any, system: str = ""):
        self.tok, self.system = tokenizer, system
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the language model's tokenizer has no chat template")
        self._cache: dict[str, tuple[list[int], list[int]]] = {}
        self.stop_ids = self._stop_ids()

    def _msgs(self, question: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": _MARK + question}]

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def prompt(self, question: str) -> tuple[list[int], list[int]]:
        """(ids before the prefix, ids after it up to the assistant's turn)."""
        if question not in self._cache:
            s = self.tok.apply_chat_template(self._msgs(question), tokenize=False, add_generation_prompt=True)
            before, after = s.split(_MARK)
            self._cache[question] = (self._ids(before), self._ids(after))
        return self._cache[question]

    def answer(self, question: str, answer: str) -> list[int]:
        """Ids the assistant should produce, its end-of-turn token included."""
        msgs = self._msgs(question)
        p = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = self.tok.apply_chat_template(msgs + [{"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(p):
            raise ValueError("chat template does not extend the generation prompt with the answer")
        return self._ids(full[len(p):].rstrip())

    def _stop_ids(self) -> list[int]:
        ids = {self.tok.eos_token_id} if self.tok.eos_token_id is not None else set()
        # The end-of-turn token: what the template appends after an assistant message.
        tail = self.answer("x", "y")
        if tail:
            ids.add(tail[-1])
        return sorted(i for i in ids if i is not None)


def build_batch(embed: nn.Module, fmt: ChatFormat, prefix: torch.Tensor, prompts: list[str],
                answers: list[str] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """prefix (B, k, H) -> inputs_embeds (B, T, H), attention mask, position ids, labels (B, T).

    Training batches (answers given) are right-padded; generation batches are left-padded so
    every row's next token sits in the last column.
    """
    B, k, H = prefix.shape
    seqs, labels = [], []
    for b in range(B):
        before, after = fmt.prompt(prompts[b])
        tgt = fmt.answer(prompts[b], answers[b]) if answers is not None else []
        ids_b = torch.tensor(before, dtype=torch.long)
        ids_a = torch.tensor(after + tgt, dtype=torch.long)
        seqs.append(torch.cat([embed(ids_b), prefix[b], embed(ids_a)]))  # (T_b, H)
        labels.append([-100] * (len(before) + k + len(after)) + tgt)
    T = max(s.shape[0] for s in seqs)
    x = prefix.new_zeros(B, T, H)
    mask = torch.zeros(B, T, dtype=torch.long)
    lab = torch.full((B, T), -100, dtype=torch.long)
    left = answers is None
    for b, s in enumerate(seqs):
        n = s.shape[0]
        sl = slice(T - n, T) if left else slice(0, n)
        x[b, sl], mask[b, sl] = s, 1
        lab[b, sl] = torch.tensor(labels[b])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return x, mask, pos, lab


def prefix_loss(lm: nn.Module, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
                labels: torch.Tensor, per_example: bool = False) -> torch.Tensor:
    """Next-token cross-entropy on answer tokens only; the vocabulary projection runs only there.

    `per_example`: the mean over each example's answer tokens, then over examples, so a
    two-token answer weighs as much as a 25-token caption (a token mean lets captions drown QA)."""
    h = lm.get_decoder()(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state  # (B, T, H)
    return answer_loss(lm, h, labels, per_example)


def answer_loss(lm: nn.Module, h: torch.Tensor, labels: torch.Tensor, per_example: bool = False) -> torch.Tensor:
    """`prefix_loss` from the decoder's final (normed) hidden states h (B, T, H)."""
    tgt = labels[:, 1:]  # position t predicts token t+1
    sel = tgt != -100
    logits = lm.get_output_embeddings()(h[:, :-1][sel])  # (n_answer_tokens, V)
    if not per_example:
        return F.cross_entropy(logits.float(), tgt[sel])
    tok = F.cross_entropy(logits.float(), tgt[sel], reduction="none")  # (n_answer_tokens,)
    row = sel.nonzero()[:, 0]  # the example each answer token belongs to
    n = torch.bincount(row, minlength=h.shape[0]).clamp(min=1)
    per_row = torch.zeros(h.shape[0], dtype=tok.dtype).index_add_(0, row, tok) / n  # (B,)
    return per_row[sel.any(1)].mean()


@torch.inference_mode()
def greedy_decode(lm: nn.Module, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, stop_ids: list[int],
                  max_new_tokens: int) -> Iterator[torch.Tensor]:
    """Greedy tokens, one (B,) tensor per step (rows that finished repeat a stop id); KV-cached."""
    stop = torch.tensor(stop_ids, dtype=torch.long)
    out = lm(inputs_embeds=x, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    past = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1)  # (B,)
    done = torch.zeros(x.shape[0], dtype=torch.bool)
    for _ in range(max_new_tokens):
        nxt = torch.where(done, stop[0], nxt)
        yield nxt
        done |= torch.isin(nxt, stop)
        if bool(done.all()):
            return
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        pos = pos[:, -1:] + 1
        out = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, past_key_values=past,
                 use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1)
