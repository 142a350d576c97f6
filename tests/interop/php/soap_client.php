<?php
// PHP SoapClient, generated from our served WSDL, against `msgcenter serve`.
//
// Usage: php soap_client.php WSDL_URL TOKEN BAD_TOKEN
//   pushes one event (PushEvent), a collection of two (PushEvents), then an event without
//   `type` (must be a Client fault) and one with BAD_TOKEN (must be a fault).
// Prints one JSON object (ids as strings: PHP ints are 64-bit, so they arrive exact) and
// exits 0 when every step behaved as expected, 1 otherwise.

declare(strict_types=1);

if ($argc < 4) {
    fwrite(STDERR, "usage: php soap_client.php WSDL_URL TOKEN BAD_TOKEN\n");
    exit(2);
}
[, $wsdl, $token, $badToken] = $argv;
$root = str_contains($wsdl, 'batchEvent') ? 'batchEvent' : 'rtEvent';

function event_xml(string $root, string $type, int $n): string
{
    $type = $type === '' ? '' : sprintf(' type="%s"', htmlspecialchars($type));
    return sprintf(
        '<%1$s%2$s email="php%3$d@example.com" wishedChannel="0" externalId="php-%3$d">'
        . '<ctx><client><firstname>Ada</firstname><lastname>Lovelace %3$d</lastname></client>'
        . '</ctx></%1$s>',
        $root, $type, $n
    );
}

// Every <id> of a pdomIds document: <id plId=".." externalId=".."/> (no DOM extension needed).
function ids_of(string $xml): array
{
    $out = [];
    preg_match_all('/<(?:\w+:)?id\b([^>]*)>/', $xml, $matches);
    foreach ($matches[1] as $attrs) {
        $get = function (string $name) use ($attrs): string {
            return preg_match('/\b' . $name . '="([^"]*)"/', $attrs, $m)
                ? html_entity_decode($m[1], ENT_QUOTES | ENT_XML1) : '';
        };
        $out[] = ['plId' => $get('plId'), 'externalId' => $get('externalId')];
    }
    return $out;
}

function fault_of(SoapFault $f): array
{
    return [
        'faultcode' => $f->faultcode,
        'faultstring' => $f->faultstring,
        'detail' => is_string($f->detail ?? null) ? $f->detail : json_encode($f->detail ?? null),
    ];
}

$result = ['ok' => false, 'service' => $root];
try {
    $client = new SoapClient($wsdl, [
        'trace' => true,
        'exceptions' => true,
        'cache_wsdl' => WSDL_CACHE_NONE,
        'connection_timeout' => 10,
    ]);
    $result['functions'] = $client->__getFunctions();

    $one = $client->PushEvent([
        'sessiontoken' => $token,
        'domEvent' => ['any' => event_xml($root, 'order_confirmation', 1)],
    ]);
    // xsd:long -> PHP int (64-bit): exact; keep it a string for JSON consumers.
    $result['plId'] = is_int($one->plId) ? (string) $one->plId : var_export($one->plId, true);
    $result['plIdPhpType'] = gettype($one->plId);

    $many = $client->PushEvents([
        'sessiontoken' => $token,
        'domEventCollection' => [
            'any' => '<Events>' . event_xml($root, 'order_confirmation', 2)
                . event_xml($root, 'order_confirmation', 3) . '</Events>',
        ],
    ]);
    $result['ids'] = ids_of($many->pdomIds->any ?? '');

    try {
        $client->PushEvent([
            'sessiontoken' => $token,
            'domEvent' => ['any' => event_xml($root, '', 4)],
        ]);
        $result['missingTypeFault'] = null;
    } catch (SoapFault $f) {
        $result['missingTypeFault'] = fault_of($f);
    }

    try {
        $client->PushEvent([
            'sessiontoken' => $badToken,
            'domEvent' => ['any' => event_xml($root, 'order_confirmation', 5)],
        ]);
        $result['badTokenFault'] = null;
    } catch (SoapFault $f) {
        $result['badTokenFault'] = fault_of($f);
    }

    $result['ok'] = count($result['ids']) === 2
        && $result['missingTypeFault'] !== null
        && $result['badTokenFault'] !== null;
} catch (Throwable $e) {
    $result['error'] = get_class($e) . ': ' . $e->getMessage();
    if (isset($client)) {
        $result['lastResponse'] = $client->__getLastResponse();
    }
}

echo json_encode($result, JSON_UNESCAPED_SLASHES), "\n";
exit($result['ok'] ? 0 : 1);
