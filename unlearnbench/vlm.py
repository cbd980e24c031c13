"""Asking a LLaVA model questions about images and scoring its answers.

One prompt format for the embedded and the real models (LLaVA-1.5's conversation format), greedy
decoding, and the two scoring rules of the ``llava`` suite, both case-insensitive: an answer is right
when it contains the expected answer as a substring (the SLUG reference's rule: "Elon Musk" in
"that is elon musk."), or as whole words ("none" does not contain "one").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

PROMPT = "USER: <image>\n{question} ASSISTANT:"  # llava-hf/llava-1.5's conversation format


def prompt_ids(processor, question: str, image) -> torch.Tensor:
    """Token ids of the prompt for ``question``, with ``<image>`` expanded to as many image tokens
    as the vision tower yields for ``image`` (every image of a fixed-size processor gets the same)."""
    encoded = processor(text=[PROMPT.format(question=question)], images=[image], return_tensors="pt")
    return encoded["input_ids"][0]


@torch.no_grad()
def greedy_answers(model: nn.Module, tokenizer, prompts: Sequence[torch.Tensor], pixel_values: torch.Tensor,
                   max_new_tokens: int) -> list[str]:
    """Greedy answers, one per row: prompt ``prompts[i]`` (1-D ids) about image ``pixel_values[i]``.

    Prompts of different lengths share one batch left-padded, as batched generation with a decoder-only
    model needs: every row's answer starts right after its own prompt, the mask hides the padding and
    ``generate`` numbers positions from the mask, so a row's answer is the one it gets alone (up to float
    rounding). Items asking different questions need not be generated one question at a time."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                         pixel_values=pixel_values.to(device, dtype), max_new_tokens=max_new_tokens,
                         do_sample=False)
    return [text.strip() for text in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]


def answer_items(model: nn.Module, tokenizer, prompts: Callable[[str], torch.Tensor],
                 pixels: Callable[[Sequence[int]], torch.Tensor], image_index: Sequence[int],
                 questions: Sequence[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Answers to item i = (``questions[i]``, image ``image_index[i]``), ``batch_size`` items at a time.

    ``prompts(question)`` gives the prompt ids, ``pixels(indices)`` the images' pixel values. Items go
    in order of prompt length, longest first (the order of the items otherwise kept), so a batch mixes
    questions with little padding: the forget check of one identity, asked in turn three ways, is one
    generate call, and a real data set's per-item questions still fill whole batches.
    """
    ids = {question: prompts(question) for question in dict.fromkeys(questions)}
    order = sorted(range(len(questions)), key=lambda i: -len(ids[questions[i]]))
    answers: list[str] = [""] * len(questions)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        replies = greedy_answers(model, tokenizer, [ids[questions[i]] for i in chunk],
                                 pixels([image_index[i] for i in chunk]), max_new_tokens)
        for i, reply in zip(chunk, replies):
            answers[i] = reply
    return answers


def answer_batch(prompts: Sequence[torch.Tensor], answers: Sequence[str], tokenizer
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, labels, attention mask) for teaching or scoring answers: each row is a prompt
    (1-D ids) followed by its answer's tokens and end-of-sequence, right-padded; labels are -100
    except on the answer and end-of-sequence, so the loss is the answer's negative log-likelihood."""
    seqs = []
    for prompt, answer in zip(prompts, answers):
        reply = torch.tensor(tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        seqs.append((torch.cat([prompt, reply]), torch.cat([torch.full_like(prompt, -100), reply])))
    width = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, (seq, lab) in enumerate(seqs):
        ids[row, :len(seq)], labels[row, :len(seq)], mask[row, :len(seq)] = seq, lab, 1
    return ids, labels, mask


MATCH_RULES = ("substring", "word")


def contains_answer(reply: str, expected: str, match: str = "word") -> bool:
    """Whether ``reply`` contains ``expected``, ignoring case: as a substring of the stripped texts
    (``match="substring"``, the reference's rule) or as whole words, ignoring punctuation (``"word"``)."""
    if match == "substring":
        wanted = expected.strip().lower()
        if not wanted:
            raise ValueError(f"expected answer {expected!r} is empty")
        return wanted in reply.strip().lower()
    if match != "word":
        raise ValueError(f"match={match!r}; expected one of {', '.join(MATCH_RULES)}")
    words = re.findall(r"\w+", reply.lower())
    wanted = re.findall(r"\w+", expected.lower())
    if not wanted:
        raise ValueError(f"expected answer {expected!r} has no words")
    n = len(wanted)
    return any(words[i:i + n] == wanted for i in range(len(words) - n + 1))
