package node

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"slices"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/federation"

	"github.com/matrixos/matrixos/internal/contracts"
	fed "github.com/matrixos/matrixos/internal/federation"
	"github.com/matrixos/matrixos/internal/ledger"
)

// wireWitness makes the node a witness of the servers it shares ledger
// rooms with (their add-checkpoint requests on the federation listener,
// its key beside) and has its own log's checkpoints cosigned by the same
// servers: witnessing is mutual, and a server that shares no logged room
// is refused. An alert is sent to the node's admins as a server notice.
func (n *Node) wireWitness(ctx context.Context, nodeKey ed25519.PrivateKey) error {
	key, err := ledger.DeriveWitnessKey(nodeKey)
	if err != nil {
		return err
	}
	w, err := ledger.NewWitness(ctx, n.DB, n.log, n.cfg.ServerName, key)
	if err != nil {
		return err
	}
	n.Witness = w
	w.OnAlert = n.noticeAdmins
	w.Peers = n.ledgerPeers
	f := n.Federation
	addCheckpoint := f.Authenticate(w.AddCheckpointHandler(fed.AuthenticatedOrigin))
	// Authenticated by X-Matrix like every federation request, with the
	// body bounded before Authenticate reads it.
	f.HandleUnauthenticated("POST "+ledger.WitnessPrefix+"add-checkpoint", http.MaxBytesHandler(addCheckpoint, ledger.MaxWitnessRequestBytes))
	f.HandleUnauthenticated("GET "+ledger.WitnessPrefix+"key", w.KeyHandler())
	n.Ledger.StartCosigning(n.ledgerPeers, witnessClient{f.Client})
	return nil
}

// ledgerPeers returns the other servers with members in the rooms the
// events log holds: the witnesses asked to cosign its checkpoints.
func (n *Node) ledgerPeers(ctx context.Context) ([]string, error) {
	rooms, err := n.Ledger.LedgerRooms(ctx, n.Rooms.AllRooms)
	if err != nil {
		return nil, err
	}
	var peers []string
	for _, room := range rooms {
		for _, server := range n.Rooms.JoinedServers(ctx, room) {
			if server != n.cfg.ServerName {
				peers = append(peers, server)
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers), nil
}

// noticeAdmins tells every active admin of the node about a witness
// alert, as a server notice.
func (n *Node) noticeAdmins(ctx context.Context, a ledger.Alert) {
	body := fmt.Sprintf("Ledger witness alert (%s): %s Alert %s.\n\nCosigned:\n%s\nPresented:\n%s",
		a.Kind, a.Summary(), a.ID, a.Cosigned, a.Presented)
	n.noticeEachAdmin(ctx, "ledger witness", body)
}

// noticeEachAdmin sends body as a server notice to every active admin;
// what failed is logged under what.
func (n *Node) noticeEachAdmin(ctx context.Context, what, body string) {
	if n.Admin == nil {
		return
	}
	users, err := n.Accounts.ListUserRecords(ctx)
	if err != nil {
		n.log.Error(what+": list the admins to notify", "err", err)
		return
	}
	for _, u := range users {
		if !u.IsAdmin || u.Deactivated {
			continue
		}
		if err := n.Admin.SendNotice(ctx, u.ID, body); err != nil {
			n.log.Error(what+": send the notice", "user_id", u.ID, "err", err)
		}
	}
}

// noticeContractHalt tells every active admin of the node about a
// contract attachment the follower halted, as a server notice.
func (n *Node) noticeContractHalt(ctx context.Context, h contracts.Halt) {
	n.noticeEachAdmin(ctx, "contracts", fmt.Sprintf("Contract %q (module %s) in %s is halted: the wall clock, not its gas, stopped its call on %s three times (%v). Attach it again to restart it.",
		h.Attachment, h.Module, h.RoomID, h.EventID, h.Err))
}

// witnessClient reaches other servers' witnesses over federation.
type witnessClient struct{ c *federation.Client }

var witnessPath = mautrix.BaseURLPath{"_matrixos", "ledger", "v1", "witness"}

// AddCheckpoint posts the request, signed with X-Matrix, and returns the
// answer whatever its status.
func (w witnessClient) AddCheckpoint(ctx context.Context, server string, req ledger.AddCheckpointRequest) (int, []byte, error) {
	body, resp, err := w.c.MakeFullRequest(ctx, federation.RequestParams{
		ServerName:   server,
		Method:       http.MethodPost,
		Path:         append(slices.Clone(witnessPath), "add-checkpoint"),
		Authenticate: true,
		RequestJSON:  req,
	})
	if resp == nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}

// WitnessKey fetches server's witness key.
func (w witnessClient) WitnessKey(ctx context.Context, server string) (string, error) {
	body, resp, err := w.c.MakeFullRequest(ctx, federation.RequestParams{
		ServerName: server,
		Method:     http.MethodGet,
		Path:       append(slices.Clone(witnessPath), "key"),
	})
	if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
		return "", fmt.Errorf("%w: %s answered %d", ledger.ErrNoWitness, server, resp.StatusCode)
	}
	if err != nil {
		return "", err
	}
	return string(body), nil
}
