package slack

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"maunium.net/go/mautrix/bridgev2/networkid"
)

// Network IDs. Slack's IDs are upper case (T0123, C0123, U0123); a ghost's
// ID is lower-cased so that its Matrix localpart needs no escaping.

func portalKey(teamID, channelID string) networkid.PortalKey {
	return networkid.PortalKey{ID: networkid.PortalID(teamID + "-" + channelID)}
}

// parsePortalID splits a portal ID into team and channel.
func parsePortalID(portalID networkid.PortalID) (teamID, channelID string, err error) {
	teamID, channelID, ok := strings.Cut(string(portalID), "-")
	if !ok || teamID == "" || channelID == "" {
		return "", "", fmt.Errorf("malformed Slack portal ID %q", portalID)
	}
	return teamID, channelID, nil
}

func ghostID(teamID, userID string) networkid.UserID {
	return networkid.UserID(strings.ToLower(teamID + "-" + userID))
}

// parseGhostID returns the Slack user ID a ghost stands for.
func parseGhostID(ghost networkid.UserID) (teamID, userID string, ok bool) {
	teamID, userID, ok = strings.Cut(strings.ToUpper(string(ghost)), "-")
	return teamID, userID, ok && teamID != "" && userID != ""
}

func loginID(teamID, botUserID string) networkid.UserLoginID {
	return networkid.UserLoginID(teamID + "-" + botUserID)
}

// messageID names a Slack message: channel and ts identify it in a team.
func messageID(teamID, channelID, ts string) networkid.MessageID {
	return networkid.MessageID(teamID + "-" + channelID + "-" + ts)
}

// parseMessageID returns the channel and ts of a message ID.
func parseMessageID(id networkid.MessageID) (channelID, ts string, err error) {
	parts := strings.SplitN(string(id), "-", 3)
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return "", "", fmt.Errorf("malformed Slack message ID %q", id)
	}
	return parts[1], parts[2], nil
}

// filePartID is the part of a message that carries one of its files.
func filePartID(fileID string) networkid.PartID {
	return networkid.PartID("file-" + fileID)
}

// parseTS converts a Slack ts ("1712345678.000100") to a time.
func parseTS(ts string) time.Time {
	secs, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}
	}
	micros, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return time.Unix(s, micros*1000)
}
