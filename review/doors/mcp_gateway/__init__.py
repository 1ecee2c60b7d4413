"""The MCP approval gateway (PROTOCOL.md section 11): an MCP server in front of another.

server.py speaks MCP (the official SDK) to the client and to the upstream server;
calls.py decides what each `tools/call` gets (forward, refuse, -32042, hold);
bridge.py turns a call into a deferral and reports its execution, through the domain;
command.py is `flask --app app mcp-gateway`.
"""
