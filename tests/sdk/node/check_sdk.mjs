// The official OpenAI Node SDK against a running gateway. Run by
// tests/api/sdk.rs with GATEWAY (base URL) and MANAGED_KEY set; exits
// non-zero on the first failed check.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GATEWAY}/v1`,
  apiKey: process.env.MANAGED_KEY,
  maxRetries: 0,
});

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function streamText(mode) {
  const stream = await client.chat.completions.create(
    { model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "node stream" }] },
    { headers: mode ? { "x-mock-mode": mode } : {} },
  );
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  return text;
}

async function raises(call, what) {
  try {
    const result = await call();
    check(false, `${what} raised (got ${JSON.stringify(result)})`);
  } catch (e) {
    check(true, `${what} -> ${e.constructor.name}`);
  }
}

const reply = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "node hello" }],
});
check(reply.choices[0].message.content === "echo: node hello", "chat completion");
check((await streamText("")) === "echo: node stream", "streamed chat completion");

// An answer cut short upstream is an error, never a shorter answer.
await raises(() => streamText("reset"), "stream reset mid-way");
await raises(
  () =>
    client.chat.completions.create(
      { model: "gpt-4o-mini", messages: [{ role: "user", content: "cut" }] },
      { headers: { "x-mock-mode": "cut" } },
    ),
  "sized answer cut short",
);
console.log("all Node SDK checks passed");
