from datetime import timedelta

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from deployflow.temporal import DEPLOY_APP, register_search_attributes


@workflow.defn(name="SearchAttributeProbe")
class SearchAttributeProbe:
    @workflow.run
    async def run(self, app: str) -> str:
        workflow.upsert_search_attributes([DEPLOY_APP.value_set(app)])
        await workflow.sleep(timedelta(hours=1))
        return workflow.info().typed_search_attributes.get(DEPLOY_APP) or ""


async def _probe(env: WorkflowEnvironment, wf_id: str) -> str:
    async with Worker(env.client, task_queue="probe", workflows=[SearchAttributeProbe]):
        return await env.client.execute_workflow(
            SearchAttributeProbe.run, "shop", id=wf_id, task_queue="probe",
            execution_timeout=timedelta(hours=2),
        )


async def test_time_skipping_server_accepts_our_search_attributes(time_skipping_env: WorkflowEnvironment) -> None:
    await register_search_attributes(time_skipping_env.client)  # a second time: must be idempotent
    assert await _probe(time_skipping_env, "probe-ts") == "shop"
