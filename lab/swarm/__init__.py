"""Labs placed on a Docker Swarm (`--engine swarm`): each lab a replicated job of the tcplab image
on any node, its progress and results streamed back through the service's logs; and a Swarm on this
one machine to try it and test it (`invoke swarm`)."""
