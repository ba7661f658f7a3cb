"""`ggtool serve`: Ollama's and OpenAI's HTTP APIs over the store (FastAPI + llama-cpp-python runners).

Modules: app (factory, error mapping), ollama_api / store_api / openai_api (endpoints),
inference (shared generation path), scheduler (runner lifecycle), models (store lookup),
templates + gotemplate (prompt building), tools (tool-call/thinking parsers), options,
schemas (request bodies), security (host guard, CORS, body limits), config (environment).
"""
