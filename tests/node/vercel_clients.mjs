// The Vercel AI SDK's default model (`openai(model)`: the Responses API), streamed and not,
// and its chat model, pointed at a base URL. Prints what it got as one JSON line.
import { generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const [baseURL, apiKey, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });

const plain = await generateText({ model: openai(model), prompt: "hello from node" });
const streamed = streamText({ model: openai(model), prompt: "stream from node" });
let text = "";
for await (const part of streamed.textStream) text += part;
const chat = await generateText({ model: openai.chat(model), prompt: "chat from node" });
console.log(JSON.stringify({ plain: plain.text, streamed: text, chat: chat.text }));
