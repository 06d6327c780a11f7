"""Platform-neutral chat layer: `/tasks` grammar, permissions, board data, command service.

Slack, Discord and the web board all build on these modules; nothing here imports a chat SDK.
"""
