"""A minimal stage run as a real process by test_stage.py: raw_docs in, clean_docs out.

A raw doc whose content_hash is "boom" makes the processor fail, to prove that only
that message is dead-lettered and the stream goes on; one whose content_hash is "slow" keeps
its batch SLOW_SECONDS in the processor. ECHO_IN_FLIGHT sets the batches handled at once.
Its "warehouse" is a file of raw docs stored but never announced (data_dir/unannounced.jsonl):
its backlog.
"""
import asyncio
import os

from llmtwin.bus.stage import StageSpec, run_stage
from llmtwin.events import CleanDocStored, RawDocStored
from llmtwin.settings import Settings

SLOW_SECONDS = 8.0


class EchoProcessor:
    def __init__(self, settings):
        self.unannounced = settings.data_dir / "unannounced.jsonl"
        self.done = set()

    async def handle(self, events):
        if any(e.content_hash == "boom" for e in events):
            raise RuntimeError("boom is not processable")
        if any(e.content_hash == "slow" for e in events):
            await asyncio.sleep(SLOW_SECONDS)
        self.done.update(e.id for e in events)
        return [CleanDocStored(**e.model_dump(exclude={"emitted_at"})) for e in events]

    async def backlog(self):
        lines = self.unannounced.read_text().splitlines() if self.unannounced.exists() else []
        for line in lines:
            event = RawDocStored.model_validate_json(line)
            if event.id not in self.done:
                yield event

    async def close(self):
        pass


async def build(settings):
    return EchoProcessor(settings)


if __name__ == "__main__":
    settings = Settings()
    run_stage(StageSpec(name="echo", source=RawDocStored.TOPIC, port=settings.cleaner_port, build=build,
                        batch_size=4, batch_within=0.2, retries=1,
                        in_flight=int(os.environ.get("ECHO_IN_FLIGHT", "1"))), settings)
