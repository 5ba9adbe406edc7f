"""Local processes for the embedded stack (broker, vector store), started and stopped by the project."""
