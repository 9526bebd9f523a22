-- Every LLM call (and every fallback to the rules), for `llm usage` and cost:
-- task (classify | draft | check), model, prompt name and version
-- (e.g. classify.v1), tokens, latency and outcome:
--   ok       the answer was valid and used
--   invalid  the answer did not pass validation (schema, grounding)
--   error    transport error, timeout or an error answer from the server
--   fallback no call: the rules classifier / the template draft decided
-- Never the prompt or the message: accounting holds numbers only.
CREATE TABLE llm_calls (
    id BIGSERIAL PRIMARY KEY,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX llm_calls_created ON llm_calls(created_at);
