"""A minimal stage run as a real process by test_stage.py: raw_docs in, clean_docs out.

A raw doc whose content_hash is "boom" makes the processor fail, to prove that only
that message is dead-lettered and the stream goes on.
"""
from llmtwin.bus.stage import StageSpec, run_stage
from llmtwin.events import CleanDocStored, RawDocStored
from llmtwin.settings import Settings


class EchoProcessor:
    async def handle(self, events):
        if any(e.content_hash == "boom" for e in events):
            raise RuntimeError("boom is not processable")
        return [CleanDocStored(**e.model_dump(exclude={"emitted_at"})) for e in events]

    async def backlog(self):
        return
        yield  # an async generator with nothing to replay

    async def close(self):
        pass


async def build(settings):
    return EchoProcessor()


if __name__ == "__main__":
    settings = Settings()
    run_stage(StageSpec(name="echo", source=RawDocStored.TOPIC, port=settings.cleaner_port, build=build,
                        batch_size=4, batch_within=0.2, retries=1), settings)
