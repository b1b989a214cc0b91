// The seed's broker, as people write it in Node: Express + global fetch (undici).
// A baseline for the benchmark only: POST /oneinbox/start-call -> upstream
// POST /v1/calls/web with the secret key -> the browser gets the three fields.
//
//   PORT=8001 UPSTREAM=http://127.0.0.1:8000 API_KEY=... AGENT_ID=... node server.js
"use strict";
const express = require("express");

const port = Number(process.env.PORT);
const upstream = process.env.UPSTREAM;
const apiKey = process.env.API_KEY;
const agentId = process.env.AGENT_ID;

const app = express();
app.use(express.json({ limit: "16kb" }));

app.post("/oneinbox/start-call", async (req, res) => {
  const user = req.get("x-bench-user");
  if (!user) return res.status(401).json({ error: "sign in" });
  try {
    const answer = await fetch(upstream + "/v1/calls/web", {
      method: "POST",
      headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({
        agent_id: agentId,
        variables: { customer_name: `Bench ${user}` },
        metadata: { caller: user, path: "/oneinbox/start-call" },
      }),
      signal: AbortSignal.timeout(10000),
    });
    if (answer.status !== 201) return res.status(502).json({ error: "upstream" });
    const data = await answer.json();
    res.set("Cache-Control", "no-store");
    res.status(201).json({
      call_id: data.id,
      server_url: data.server_url,
      participant_token: data.participant_token,
    });
  } catch (err) {
    res.status(503).json({ error: "upstream unavailable" });
  }
});

app.listen(port, "127.0.0.1");
