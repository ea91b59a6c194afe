// A GitHub Actions step that reports a failed workflow run to Control Tower (see workflow.yml):
// the repository, run id, job, branch and the run's URL come from the runner's environment.
import { Client, events } from "../../clients/typescript/dist/src/index.js";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (GitHub Actions sets it)`);
  return value;
};
const client = new Client({
  baseUrl: process.env.CT_EDGE_URL ?? "http://127.0.0.1:8080",
  token: env("CT_TOKEN"),
  secret: env("CT_WEBHOOK_SECRET"),
  source: "github",
});
const runId = Number(env("GITHUB_RUN_ID"));
const repo = env("GITHUB_REPOSITORY");
const event = events["ci.workflow.failed"](
  {
    repo,
    runId,
    job: env("GITHUB_JOB"),
    url: `${env("GITHUB_SERVER_URL")}/${repo}/actions/runs/${runId}`,
    branch: process.env.GITHUB_REF_NAME,
  },
  // One report per run and attempt: a re-run of the step is a duplicate, not a second failure.
  { eventId: process.env.EXAMPLE_EVENT_ID ?? `gh_${repo.replace("/", "_")}_${runId}_${process.env.GITHUB_RUN_ATTEMPT ?? 1}` },
);
console.log(JSON.stringify(await client.send(event)));
