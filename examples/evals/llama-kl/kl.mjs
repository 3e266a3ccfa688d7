// kl.mjs: a Gantry gate evaluator that compares a quantized GGUF build with
// its full-precision source, the way llama.cpp's
// `llama-perplexity --kl-divergence` does, through llama.cpp's Node.js
// bindings (node-llama-cpp).
//
// Both models read the same fixed text; at every position of the second
// half of each chunk (the first half is context, as llama-perplexity
// scores it) it takes the two next-token distributions and prints one
// JSON object:
//
//	{"kl_divergence": mean KL(P_reference || P_candidate),
//	 "top1_agreement": fraction of positions where both pick the same top token,
//	 "perplexity": exp(mean -log P_candidate(the actual next token)),
//	 "reference_perplexity": the same for the reference,
//	 "tokens": positions scored}
//
// Environment:
//
//	GANTRY_MODEL      the candidate .gguf file (set by Gantry)
//	GANTRY_METRICS    where the JSON object goes (set by Gantry; stdout otherwise)
//	KL_REFERENCE      the reference (F16/BF16 source) .gguf, relative to the
//	                  working directory (the specs' directory) or absolute
//	KL_TEXT           optional: a text file to score instead of the built-in text
//	KL_CTX            optional: chunk size in tokens (default 128)
//	KL_CHUNKS         optional: at most this many chunks (default 4)
//	KL_THREADS        optional: threads (default: all)
//
// Install node-llama-cpp where Node resolves it from this file:
// `npm install node-llama-cpp@3.21.1` in the specs repository (or the image).
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const builtinText = `The harbour town woke slowly. Fishing boats came back before dawn, their
holds full of silver herring, and the market opened as the first gulls
circled the church tower. Anna sold bread from her grandmother's recipe:
rye, caraway and a little honey. Every morning the baker's boy carried two
hundred loaves down the steep street, counting them twice, because the
harbour master always asked how many had been sold the day before.
In winter the storms closed the port for weeks. People mended nets, told
stories about the lighthouse keeper who had seen a ship of glass, and
waited for the spring tides. When the weather finally turned, the whole
town walked to the breakwater to watch the first boat leave, and the
children threw flowers into the water for luck.`;

function fail(msg) {
  process.stderr.write(`kl.mjs: ${msg}\n`);
  process.exit(2);
}

const candidatePath = process.env.GANTRY_MODEL;
if (!candidatePath) fail("GANTRY_MODEL is not set");
if (!process.env.KL_REFERENCE) fail("KL_REFERENCE (the full-precision source .gguf) is not set");
const referencePath = resolve(process.env.KL_REFERENCE);
const text = process.env.KL_TEXT ? readFileSync(resolve(process.env.KL_TEXT), "utf8") : builtinText;
const nCtx = Number(process.env.KL_CTX || 128);
const maxChunks = Number(process.env.KL_CHUNKS || 4);
const threads = Number(process.env.KL_THREADS || 0);
if (!(nCtx >= 8)) fail(`KL_CTX ${process.env.KL_CTX}: want at least 8`);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false });

// distributions evaluates every chunk with model and returns, per chunk,
// the next-token distribution at each scored position (a Float64Array
// over the vocabulary).
async function distributions(path, chunks, nVocab) {
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  try {
    const vocab = nVocab;
    const context = await model.createContext({ contextSize: nCtx, batchSize: nCtx, sequences: 1, threads });
    const out = [];
    try {
      const seq = context.getSequence();
      for (const chunk of chunks) {
        await seq.clearHistory();
        const first = Math.floor(chunk.length / 2);
        const input = chunk.map((t, i) =>
          i >= first - 1 && i < chunk.length - 1
            ? [t, { generateNext: { probabilities: true, options: { temperature: 1, topK: vocab, topP: 1, minP: 0, seed: 1 } } }]
            : t,
        );
        const res = await seq.controlledEvaluate(input);
        const dists = [];
        for (let i = first - 1; i < chunk.length - 1; i++) {
          const probs = res[i]?.next?.probabilities;
          if (!probs) fail(`${path}: no probabilities at position ${i}`);
          const d = new Float64Array(vocab);
          for (const [tok, p] of probs) {
            if (tok >= vocab) fail(`${path}: token ${tok} is outside the reference's vocabulary of ${vocab}`);
            d[tok] = p;
          }
          dists.push(d);
        }
        out.push(dists);
      }
      seq.dispose();
    } finally {
      await context.dispose();
    }
    return out;
  } finally {
    await model.dispose();
  }
}

// The reference's tokenizer splits the text; both models share it. The
// vocabulary size is the GGUF metadata's (node-llama-cpp has no getter).
const refVocab = await llama.loadModel({ modelPath: referencePath, vocabOnly: true });
const md = refVocab.fileInfo?.metadata ?? {};
const arch = md.general?.architecture;
const nVocab = Math.max(md.tokenizer?.ggml?.tokens?.length ?? 0, Number(md[arch]?.vocab_size ?? 0));
const tokens = refVocab.tokenize(text);
await refVocab.dispose();
if (!nVocab) fail("cannot tell the vocabulary size of the reference");
const chunks = [];
for (let i = 0; i + nCtx <= tokens.length && chunks.length < maxChunks; i += nCtx) chunks.push(tokens.slice(i, i + nCtx));
if (chunks.length === 0) chunks.push(tokens.slice(0, Math.min(tokens.length, nCtx)));
if (chunks[0].length < 8) fail(`the text has ${tokens.length} tokens; want at least 8`);

const ref = await distributions(referencePath, chunks, nVocab);
const cand = await distributions(candidatePath, chunks, nVocab);

const eps = 1e-10;
let kl = 0, agree = 0, nll = 0, refNll = 0, n = 0;
chunks.forEach((chunk, c) => {
  const first = Math.floor(chunk.length / 2);
  ref[c].forEach((p, j) => {
    const q = cand[c][j];
    let k = 0, pArg = 0, qArg = 0;
    for (let t = 0; t < nVocab; t++) {
      if (p[t] > 0) k += p[t] * (Math.log(p[t]) - Math.log(Math.max(q[t], eps)));
      if (p[t] > p[pArg]) pArg = t;
      if (q[t] > q[qArg]) qArg = t;
    }
    kl += Math.max(k, 0);
    if (pArg === qArg) agree++;
    const next = chunk[first + j];
    nll -= Math.log(Math.max(q[next], eps));
    refNll -= Math.log(Math.max(p[next], eps));
    n++;
  });
});

const metrics = {
  kl_divergence: kl / n,
  top1_agreement: agree / n,
  perplexity: Math.exp(nll / n),
  reference_perplexity: Math.exp(refNll / n),
  tokens: n,
};
const line = JSON.stringify(metrics);
if (process.env.GANTRY_METRICS) writeFileSync(process.env.GANTRY_METRICS, line + "\n");
process.stdout.write(line + "\n");
await llama.dispose();
