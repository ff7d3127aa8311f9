// Package accounts owns users, devices, access and refresh tokens, password
// hashing (argon2id), User-Interactive Authentication, and the Client-Server
// endpoints for registration, login, logout, devices and account management.
// Authenticate resolves an access token to a device from memory. Changes
// made by the admin CLI beside a running node reach it as storage changes
// (WatchChanges): it forgets the revoked tokens and finishes deactivations.
// Every check of a password or token, on whichever endpoint, first takes
// from the login rate limit of the client IP and of the account
// (Service.Limiter).
//
// Profiles: with federation on (UseFederation), GET /profile of another
// server's user asks that server and keeps the answer for a minute, and
// FederationRoutes serves this server's profiles to others
// (GET /_matrix/federation/v1/query/profile).
package accounts
